// The op table covers the kernel interface: a kernel declared in src/core/kernel_decls.inc that no
// case of tests/op_cases.cpp runs has no gradient check, no CPU-vs-CUDA parity and no benchmark.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "op_cases.hpp"

using namespace fsad;

TEST_CASE("op table: every kernel of kernel_decls.inc has a case, and every case names declared kernels") {
    const std::vector<std::string> declared = test::declared_kernels(FSAD_KERNEL_DECLS);
    REQUIRE(declared.size() > 10);  // the file was read and parsed
    std::set<std::string> covered;
    const std::vector<test::OpCase> cases = test::op_cases();
    for (const test::OpCase& c : cases) {
        CAPTURE(c.name());
        CHECK(c.run);
        CHECK((c.grad.empty() || c.grad.size() == c.inputs.size()));
        for (const std::string& k : c.kernels) {
            CAPTURE(k);
            CHECK(std::find(declared.begin(), declared.end(), k) != declared.end());  // a typo or a removed kernel
            covered.insert(k);
        }
    }
    for (const std::string& k : declared) {
        INFO("kernel " << k << " has no case in tests/op_cases.cpp");
        CHECK(covered.count(k) == 1);
    }
}
