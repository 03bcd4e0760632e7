// Umbrella header: the whole public API of fsad.
#pragma once
#include "fsad/autograd/functions.hpp"
#include "fsad/autograd/variable.hpp"
#include "fsad/core/ops.hpp"
#include "fsad/core/parallel.hpp"
#include "fsad/core/rng.hpp"
#include "fsad/core/tensor.hpp"
#include "fsad/io/image.hpp"
#include "fsad/io/safetensors.hpp"
#include "fsad/nn/backbones.hpp"
#include "fsad/nn/layers.hpp"
#include "fsad/nn/module.hpp"
#include "fsad/nn/optim.hpp"
