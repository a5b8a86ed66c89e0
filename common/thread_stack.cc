#include "common/thread_stack.h"

#include <dlfcn.h>
#include <pthread.h>

#include <cerrno>

namespace prl {

std::size_t FlooredThreadStackBytes(std::size_t requested) {
  return requested < kMinThreadStackBytes ? kMinThreadStackBytes : requested;
}

}  // namespace prl

// Interposes glibc's pthread_attr_setstacksize for the whole process: the
// executable's definition comes first in symbol lookup (it is exported, see
// BUILD), so shared libraries such as civetweb bind to it; it floors the size
// and forwards to the next definition, glibc's.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, std::size_t size) noexcept {
  using SetStackSize = int (*)(pthread_attr_t*, std::size_t);
  static const SetStackSize next =
      reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (next == nullptr) return ENOSYS;
  return next(attr, prl::FlooredThreadStackBytes(size));
}
