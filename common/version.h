// The PRL release this tree builds; reported by prl_build_info and --version.
#ifndef PRL_COMMON_VERSION_H_
#define PRL_COMMON_VERSION_H_

namespace prl {

inline constexpr char kVersion[] = "0.1.0";

}  // namespace prl

#endif  // PRL_COMMON_VERSION_H_
