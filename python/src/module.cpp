// fsad._fsad: the Python module over the C ABI (include/fsad/fsad.h). Thin on purpose: it moves
// arguments across (paths, numpy arrays already checked and made row-strided by fsad/__init__.py),
// releases the GIL around fit and scoring, and turns statuses into fsad's exceptions
// (fsad/_errors.py). The user-facing class and its docstrings are in fsad/__init__.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "fsad/fsad.h"

namespace py = pybind11;

namespace {

struct StatusError {
    int status;
    std::string message;
};

void check(fsad_status s) {
    if (s != FSAD_OK) throw StatusError{s, fsad_last_error()};
}

// numpy [H,W] or [H,W,C] uint8/uint16/float32 with contiguous pixels (fsad/__init__.py ensures it)
fsad_image image_of(const py::array& a, size_t i) {
    fsad_image im{};
    const std::string who = "image " + std::to_string(i) + ": ";
    if (a.ndim() != 2 && a.ndim() != 3)
        throw StatusError{FSAD_ERR_ARGUMENT, who + "an array must be [H, W] or [H, W, C], got " + std::to_string(a.ndim()) + " dimensions"};
    const auto kind = a.dtype().kind();
    const auto size = a.dtype().itemsize();
    if (kind == 'u' && size == 1) im.pixel_type = FSAD_PIXEL_U8;
    else if (kind == 'u' && size == 2) im.pixel_type = FSAD_PIXEL_U16;
    else if (kind == 'f' && size == 4) im.pixel_type = FSAD_PIXEL_F32;
    else throw StatusError{FSAD_ERR_ARGUMENT, who + "dtype must be uint8, uint16 or float32, got " + std::string(py::str(a.dtype()))};
    const int64_t C = a.ndim() == 3 ? a.shape(2) : 1;
    if (a.shape(0) > INT32_MAX || a.shape(1) > INT32_MAX)
        throw StatusError{FSAD_ERR_ARGUMENT, who + "too large"};
    const bool packed = (a.shape(1) == 1 || a.strides(1) == C * size) && (a.ndim() == 2 || C == 1 || a.strides(2) == size) &&
                        a.strides(0) > 0;
    if (!packed) throw StatusError{FSAD_ERR_ARGUMENT, who + "pixels must be contiguous within a row"};
    im.data = a.data();
    im.height = static_cast<int32_t>(a.shape(0));
    im.width = static_cast<int32_t>(a.shape(1));
    im.channels = static_cast<int32_t>(C);
    im.row_stride = a.strides(0);
    return im;
}

std::vector<fsad_image> images_of(const std::vector<py::array>& arrays) {
    std::vector<fsad_image> v;
    for (size_t i = 0; i < arrays.size(); ++i) v.push_back(image_of(arrays[i], i));
    return v;
}

std::vector<const char*> c_strs(const std::vector<std::string>& s) {
    std::vector<const char*> v;
    for (const auto& x : s) v.push_back(x.c_str());
    return v;
}

// The progress callback runs on the fitting thread with the GIL re-acquired. A Python exception
// in it (KeyboardInterrupt included) or a False return stops fit; the exception is re-raised.
struct Progress {
    py::object fn;
    std::optional<py::error_already_set> error;
    static int call(const char* stage, int64_t done, int64_t total, float loss, void* user) {
        auto* p = static_cast<Progress*>(user);
        py::gil_scoped_acquire gil;
        try {
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            if (p->fn.is_none()) return 0;
            py::object r = p->fn(stage, done, total, loss);
            return !r.is_none() && !r.cast<bool>() ? 1 : 0;
        } catch (py::error_already_set& e) {
            p->error.emplace(std::move(e));
            return 1;
        }
    }
};

class Handle {
public:
    explicit Handle(const std::string& config_json) { check(fsad_detector_create(config_json.c_str(), &d_)); }
    Handle(const std::string& path, const std::string& device, bool) {
        check(fsad_detector_load(path.c_str(), device.c_str(), &d_));
    }
    ~Handle() { fsad_detector_free(d_); }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;

    void fit(const std::vector<std::string>& paths, const std::vector<py::array>& arrays, py::object progress) {
        Progress p{std::move(progress), std::nullopt};
        const auto cp = c_strs(paths);
        const auto im = images_of(arrays);
        fsad_status s;
        {
            py::gil_scoped_release nogil;
            s = paths.empty() ? fsad_detector_fit_images(d_, im.data(), im.size(), &Progress::call, &p)
                              : fsad_detector_fit_files(d_, cp.data(), cp.size(), &Progress::call, &p);
        }
        if (p.error) throw std::move(*p.error);
        check(s);
    }
    py::array_t<float> score_files(const std::vector<std::string>& paths) {
        py::array_t<float> out(static_cast<py::ssize_t>(paths.size()));
        float* o = out.mutable_data();
        const auto cp = c_strs(paths);
        fsad_status s;
        {
            py::gil_scoped_release nogil;
            s = fsad_detector_score_files(d_, cp.data(), cp.size(), o);
        }
        check(s);
        return out;
    }
    py::array_t<float> score_arrays(const std::vector<py::array>& arrays) {
        py::array_t<float> out(static_cast<py::ssize_t>(arrays.size()));
        float* o = out.mutable_data();
        const auto im = images_of(arrays);
        fsad_status s;
        {
            py::gil_scoped_release nogil;
            s = fsad_detector_score_images(d_, im.data(), im.size(), o);
        }
        check(s);
        return out;
    }
    py::tuple score_map(const py::array& array) {
        const fsad_image im = image_of(array, 0);
        py::array_t<float> map({static_cast<py::ssize_t>(im.height), static_cast<py::ssize_t>(im.width)});
        float* m = map.mutable_data();
        float score = 0;
        fsad_status s;
        {
            py::gil_scoped_release nogil;
            s = fsad_detector_score_map(d_, &im, m, static_cast<size_t>(im.width) * static_cast<size_t>(im.height), &score);
        }
        check(s);
        return py::make_tuple(map, score);
    }
    double threshold() const {
        double t = 0;
        check(fsad_detector_threshold(d_, &t));
        return t;
    }
    void set_threshold(double t) { check(fsad_detector_set_threshold(d_, t)); }
    bool fitted() const {
        int32_t f = 0;
        check(fsad_detector_is_fitted(d_, &f));
        return f != 0;
    }
    std::string config_json() const {
        char* j = nullptr;
        check(fsad_detector_config_json(d_, &j));
        std::string s(j);
        fsad_free(j);
        return s;
    }
    void save(const std::string& path) const {
        fsad_status s;
        {
            py::gil_scoped_release nogil;
            s = fsad_detector_save(d_, path.c_str());
        }
        check(s);
    }

private:
    fsad_detector* d_ = nullptr;
};

}  // namespace

PYBIND11_MODULE(_fsad, m) {
    m.doc() = "fsad's compiled core: the C ABI (fsad.h) for Python. Use fsad.Detector.";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const StatusError& e) {
            py::object errors = py::module_::import("fsad._errors");
            py::object cls = errors.attr("BY_STATUS").attr("get")(e.status, errors.attr("FsadError"));
            PyErr_SetObject(cls.ptr(), py::str(e.message).ptr());
        }
    });
    m.attr("ABI_VERSION") = FSAD_ABI_VERSION;
    m.def("abi_version", &fsad_abi_version, "The loaded C library's ABI version.");
    m.def("version", [] { return std::string(fsad_version()); }, "fsad's version string.");
    py::class_<Handle>(m, "Handle")
        .def(py::init<const std::string&>(), py::arg("config_json"))
        .def_static("load", [](const std::string& path, const std::string& device) {
            return std::make_unique<Handle>(path, device, true);
        }, py::arg("path"), py::arg("device") = "cpu")
        .def("fit", &Handle::fit, py::arg("paths"), py::arg("arrays"), py::arg("progress") = py::none())
        .def("score_files", &Handle::score_files, py::arg("paths"))
        .def("score_arrays", &Handle::score_arrays, py::arg("arrays"))
        .def("score_map", &Handle::score_map, py::arg("array"))
        .def("threshold", &Handle::threshold)
        .def("set_threshold", &Handle::set_threshold, py::arg("threshold"))
        .def("fitted", &Handle::fitted)
        .def("config_json", &Handle::config_json)
        .def("save", &Handle::save, py::arg("path"));
}
