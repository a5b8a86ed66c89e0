#include "common/hdf5_util.h"

#include <cstdint>
#include <vector>

#include "absl/base/const_init.h"

namespace prl::internal {
namespace {

ABSL_CONST_INIT absl::Mutex hdf5_mutex(absl::kConstInit);

herr_t CollectErrorDescription(unsigned /*n*/, const H5E_error2_t* error, void* data) {
  auto* descriptions = static_cast<std::vector<std::string>*>(data);
  if (error->desc != nullptr && error->desc[0] != '\0') descriptions->push_back(error->desc);
  return 0;
}

}  // namespace

absl::Mutex& Hdf5Mutex() { return hdf5_mutex; }

std::string Hdf5Message(const H5::Exception& e) {
  std::vector<std::string> descriptions;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectErrorDescription, &descriptions);
  std::string message = e.getDetailMsg();
  if (!descriptions.empty()) absl::StrAppend(&message, ": ", descriptions.front());
  return message;
}

H5::EnumType BoolType() {
  const H5::IntType base(H5::PredType::NATIVE_INT8);
  H5::EnumType type(base);
  int8_t false_value = 0, true_value = 1;  // insert() takes void*
  type.insert("FALSE", &false_value);
  type.insert("TRUE", &true_value);
  return type;
}

}  // namespace prl::internal
