// One table of op cases (in the manner of ggml's tests/test-backend-ops.cpp) that every backend
// test reads: the finite-difference gradient check (tests/test_gradcheck.cpp), the CPU-vs-CUDA
// parity (tests/test_cuda.cpp) and the op benchmarks (bench/bench_ops.cpp). A case is an
// op's inputs and parameters as data, and the op as a function of Vars, so that each driver runs
// it its own way: on the CPU with a gradient, on two devices, in a timing loop. Every kernel of
// src/core/kernel_decls.inc must be named by some case (tests/test_op_coverage.cpp), so a new op
// goes through all three by adding a few lines to op_cases.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "fsad/fsad.hpp"

namespace fsad::test {

/// Central differences with step h on L = sum(f(x) . R); |analytic - numeric| <= atol + rtol |numeric|.
struct GradTolerance {
    double h = 1e-2, atol = 2e-3, rtol = 2e-2;
};
/// CPU vs CUDA, elementwise: |cpu - cuda| <= atol + rtol |cpu|.
struct ParityTolerance {
    float rtol = 1e-4f, atol = 1e-5f;
};

struct OpCase {
    /// The op as the front end (include/fsad/core/ops.hpp) or autograd (ag::) names it.
    std::string op;
    /// The kernels of src/core/kernel_decls.inc that the case runs, forward and backward (none
    /// for a view such as reshape).
    std::vector<std::string> kernels;
    /// What sets the case apart (shape, parameters), for messages and benchmark names.
    std::string label;
    /// The op's tensors, CPU, seeded: differentiable inputs, then the constants it reads or updates
    /// in place (running statistics, optimiser state), which drivers move to the device with them.
    std::vector<Tensor> inputs;
    /// Which inputs get a gradient (checked by finite differences, compared across devices).
    /// None: the op has no backward (inference, optimiser and rounding kernels).
    std::vector<bool> grad;
    /// The op on Vars made of `inputs`; an op with no backward wraps its result in a Var.
    std::function<Var(const std::vector<Var>&)> run;
    GradTolerance grad_tol;
    /// Off where a finite difference cannot resolve the gradient (large reductions) or a
    /// perturbation would cross a kink; the parity and the benchmark still run the case.
    bool gradcheck = true;
    ParityTolerance out_tol;   ///< the output and the inputs after the run (in-place updates)
    ParityTolerance grad_par;  ///< the gradients (sums over more terms)
    /// Also compared in Precision::BF16 (ops with a bfloat16 path: convolutions).
    bool bf16 = false;

    std::string name() const { return op + " " + label; }
    bool differentiable() const;
};

/// Every case, with freshly made inputs (cases update some of them in place).
std::vector<OpCase> op_cases();

/// The case's inputs on `d` as Vars (copies: the case's own tensors stay as they were).
std::vector<Var> vars_on(const OpCase& c, Device d);
/// The gradient that drivers give the output's backward: seeded values of `s` on `d`.
Tensor output_grad(const Shape& s, Device d);

}  // namespace fsad::test
