#include "learner/device_math.h"

#include "ATen/Context.h"

namespace prl::learner {

void AllowTf32Products(bool allow) { at::globalContext().setAllowTF32CuBLAS(allow); }

bool Tf32ProductsAllowed() { return at::globalContext().allowTF32CuBLAS(); }

}  // namespace prl::learner
