#include <cstring>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"

using namespace fsad;
namespace fs = std::filesystem;

namespace {
std::string tmp_path(const std::string& name) {
    fs::path d = fs::temp_directory_path() / ("fsad_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return (d / name).string();
}
std::string make_file(const std::string& header, const std::string& data) {
    std::string b(8, '\0');
    uint64_t n = header.size();
    std::memcpy(b.data(), &n, 8);
    return b + header + data;
}
io::SafeTensors parse(const std::string& bytes) {
    return io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.safetensors");
}
}  // namespace

TEST_CASE("safetensors: write then read round-trips tensors and metadata") {
    std::string p = tmp_path("rt.safetensors");
    std::map<std::string, Tensor> t{{"a", test::randn(Shape{2, 3}, 1)}, {"b.c", test::randn(Shape{4}, 2)},
                                    {"empty", Tensor::zeros(Shape{0, 3})}};
    io::write_safetensors(p, t, {{"k", "v"}});
    auto r = io::read_safetensors(p);
    CHECK(r.metadata.at("k") == "v");
    CHECK(r.tensors.at("a").to_vector() == t["a"].to_vector());
    CHECK(r.tensors.at("b.c").shape() == Shape{4});
    CHECK(r.tensors.at("empty").shape() == Shape{0, 3});
    CHECK_FALSE(fs::exists(p + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("safetensors: F16, BF16 and I64 are converted to float32") {
    // 1.0 in f16 is 0x3C00, -2.0 is 0xC000; 1.0 in bf16 is 0x3F80
    std::string data;
    auto put16 = [&](uint16_t v) { data.append(reinterpret_cast<char*>(&v), 2); };
    put16(0x3C00);
    put16(0xC000);
    put16(0x3F80);
    int64_t i = 7;
    data.append(reinterpret_cast<char*>(&i), 8);
    auto r = parse(make_file(
        R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},)"
        R"("n":{"dtype":"I64","shape":[],"data_offsets":[6,14]}})", data));
    CHECK(r.tensors.at("h").to_vector() == std::vector<float>{1.0f, -2.0f});
    CHECK(r.tensors.at("b").to_vector() == std::vector<float>{1.0f});
    CHECK(r.tensors.at("n").item() == 7.0f);
}

TEST_CASE("safetensors: malformed files are refused with the file name and the problem") {
    const std::string ok_data(8, '\0');
    struct Bad {
        std::string bytes, msg;
    };
    std::vector<Bad> cases = {
        {"abc", "shorter than the 8-byte header length"},
        {make_file("{", ""), "not valid JSON"},
        {make_file("[]", ""), "not a JSON object"},
        {make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"), "truncated"},
        {make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", ok_data), "needs 12"},
        {make_file(R"({"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,8]}})", ok_data), "unsupported dtype 'Q8'"},
        {make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", ok_data), "negative dimension"},
        {make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", ok_data), "reversed"},
        {make_file(R"({"a":{"dtype":"F32","shape":[2]}})", ok_data), "lacks dtype, shape or data_offsets"},
        {make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                   ok_data),
         "overlap"},
        {make_file(R"({"__metadata__":{"x":1}})", ""), "is not a string"},
        {make_file(R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1],"data_offsets":[0,4]}})", ok_data), "at most 6"},
    };
    std::string huge(8, '\0');
    uint64_t n = uint64_t(1) << 40;
    std::memcpy(huge.data(), &n, 8);
    cases.push_back({huge, "exceeds the 100 MiB limit"});
    for (const auto& c : cases) {
        INFO("expecting: " << c.msg);
        CHECK_THROWS_WITH_AS(parse(c.bytes), doctest::Contains(c.msg.c_str()), FormatError);
    }
    CHECK_THROWS_WITH_AS(io::read_safetensors("/nonexistent/x.safetensors"),
                         doctest::Contains("/nonexistent/x.safetensors: cannot open"), IOError);
}

TEST_CASE("safetensors: backbone checkpoints validate names, shapes and dtypes") {
    auto b = nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f}, 1);
    std::string p = tmp_path("r18.safetensors");
    auto sd = b->state_dict();
    sd["fc.weight"] = Tensor::zeros(Shape{10, 64});  // a classifier head is accepted and ignored
    sd["bn1.num_batches_tracked"] = Tensor::zeros(Shape{});
    io::write_safetensors(p, sd);
    auto l = nn::load_backbone({nn::BackboneKind::ResNet18, 0.125f}, p);
    CHECK(l->flat_params().to_vector() == b->flat_params().to_vector());
    CHECK_THROWS_WITH_AS(nn::load_backbone({nn::BackboneKind::ResNet18, 0.25f}, p),
                         doctest::Contains("'conv1.weight' has shape [8, 3, 7, 7], the model expects [16, 3, 7, 7]"), FormatError);
    CHECK_THROWS_WITH_AS(nn::load_backbone({nn::BackboneKind::ResNet34, 0.125f}, p), doctest::Contains("missing key"),
                         FormatError);
    sd["layer9.weight"] = Tensor::zeros(Shape{1});
    io::write_safetensors(p, sd);
    CHECK_THROWS_WITH_AS(nn::load_backbone({nn::BackboneKind::ResNet18, 0.125f}, p),
                         doctest::Contains("unexpected key(s): layer9.weight"), FormatError);
    CHECK_NOTHROW(nn::load_backbone({nn::BackboneKind::ResNet18, 0.125f}, p, false));
    // truncate the file: refused, naming it
    std::string bytes = io::read_file(p);
    std::ofstream(p, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    CHECK_THROWS_WITH_AS(nn::load_backbone({nn::BackboneKind::ResNet18, 0.125f}, p), doctest::Contains(p.c_str()), FormatError);
}
