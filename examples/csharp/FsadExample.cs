// fsad from C# through P/Invoke (the C ABI, include/fsad/fsad.h): fit on normal images, score a
// file and an in-memory 8-bit image, save, load. Builds and runs with Mono or .NET:
//   mcs -out:FsadExample.exe FsadExample.cs && LD_LIBRARY_PATH=<prefix>/lib mono FsadExample.exe MODEL TEST NORMAL...
using System;
using System.Runtime.InteropServices;

static class Fsad {
    const string Lib = "fsad_c";  // libfsad_c.so / fsad_c.dll

    [StructLayout(LayoutKind.Sequential)]
    public struct Image {
        public IntPtr Data;
        public int Width, Height, Channels, PixelType;  // PixelType: 1 = uint8, 2 = uint16, 3 = float32
        public long RowStride;                           // bytes; 0 = width * channels * pixel size
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate int Progress(IntPtr stage, long done, long total, float loss, IntPtr user);

    [DllImport(Lib)] public static extern int fsad_abi_version();
    [DllImport(Lib)] static extern IntPtr fsad_last_error();
    [DllImport(Lib)] public static extern int fsad_detector_create(string configJson, out IntPtr detector);
    [DllImport(Lib)] public static extern int fsad_detector_load(string path, string device, out IntPtr detector);
    [DllImport(Lib)] public static extern void fsad_detector_free(IntPtr detector);
    [DllImport(Lib)] public static extern int fsad_detector_fit_files(IntPtr d, string[] paths, UIntPtr n, Progress progress, IntPtr user);
    [DllImport(Lib)] public static extern int fsad_detector_score_files(IntPtr d, string[] paths, UIntPtr n, [Out] float[] scores);
    [DllImport(Lib)] public static extern int fsad_detector_score_images(IntPtr d, Image[] images, UIntPtr n, [Out] float[] scores);
    [DllImport(Lib)] public static extern int fsad_detector_threshold(IntPtr d, out double threshold);
    [DllImport(Lib)] public static extern int fsad_detector_save(IntPtr d, string path);

    public const int AbiVersion = 1;  // FSAD_ABI_VERSION of the header this file follows
    public static string LastError() => Marshal.PtrToStringAnsi(fsad_last_error());
    public static void Check(int status, string what) {
        if (status != 0) throw new InvalidOperationException(what + " failed (status " + status + "): " + LastError());
    }
}

static class Program {
    static int Main(string[] args) {
        if (args.Length < 3) { Console.Error.WriteLine("usage: FsadExample MODEL_OUT TEST_IMAGE NORMAL_IMAGE..."); return 2; }
        if (Fsad.fsad_abi_version() != Fsad.AbiVersion) { Console.Error.WriteLine("libfsad_c has another ABI"); return 1; }
        string config = "{\"backbone\": \"resnet18\", \"width\": 0.125, \"weights\": \"\", \"resolution\": 32, \"scorer\": \"global\", \"n_augment\": 2}";
        Fsad.Check(Fsad.fsad_detector_create(config, out IntPtr det), "create");
        try {
            var normal = new string[args.Length - 2];
            Array.Copy(args, 2, normal, 0, normal.Length);
            int calls = 0;
            Fsad.Progress progress = (stage, done, total, loss, user) => { calls++; return 0; };
            Fsad.Check(Fsad.fsad_detector_fit_files(det, normal, (UIntPtr)normal.Length, progress, IntPtr.Zero), "fit");
            GC.KeepAlive(progress);
            Fsad.Check(Fsad.fsad_detector_threshold(det, out double threshold), "threshold");
            Console.WriteLine($"fitted on {normal.Length} image(s), {calls} progress calls, threshold {threshold:F4}");

            var scores = new float[1];
            Fsad.Check(Fsad.fsad_detector_score_files(det, new[] { args[1] }, (UIntPtr)1, scores), "score");
            Console.WriteLine($"score {args[1]} {scores[0]:F4} anomalous {scores[0] > threshold}");

            // an 8-bit gray image in managed memory, pinned for the call
            const int W = 48, H = 40;
            var pixels = new byte[W * H];
            for (int y = 0; y < H; y++) for (int x = 0; x < W; x++) pixels[y * W + x] = (byte)(x * 5 + y);
            var pin = GCHandle.Alloc(pixels, GCHandleType.Pinned);
            try {
                var img = new Fsad.Image { Data = pin.AddrOfPinnedObject(), Width = W, Height = H, Channels = 1, PixelType = 1, RowStride = W };
                var s = new float[1];
                Fsad.Check(Fsad.fsad_detector_score_images(det, new[] { img }, (UIntPtr)1, s), "score image");
                Console.WriteLine($"buffer score {s[0]:F4}");
            } finally { pin.Free(); }

            Fsad.Check(Fsad.fsad_detector_save(det, args[0]), "save");
            Fsad.Check(Fsad.fsad_detector_load(args[0], "cpu", out IntPtr loaded), "load");
            var again = new float[1];
            Fsad.Check(Fsad.fsad_detector_score_files(loaded, new[] { args[1] }, (UIntPtr)1, again), "score (loaded)");
            Fsad.fsad_detector_free(loaded);
            Console.WriteLine($"loaded model scores {again[0]:F4}");

            int st = Fsad.fsad_detector_load("no/such/model.fsad", null, out IntPtr none);
            Console.WriteLine($"loading a missing file: status {st}: {Fsad.LastError()}");
            return Math.Abs(again[0] - scores[0]) <= 1e-3 * Math.Abs(scores[0]) && st == 2 ? 0 : 1;
        } finally {
            Fsad.fsad_detector_free(det);
        }
    }
}
