#include "common/thread_stack.h"

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>

namespace prl {

std::size_t FlooredThreadStackBytes(std::size_t requested) {
  return requested < kMinThreadStackBytes ? kMinThreadStackBytes : requested;
}

}  // namespace prl

namespace {

using SetStackSize = int (*)(pthread_attr_t*, std::size_t);

SetStackSize Next() {
  return reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
}

// Resolved while the executable loads, so the first call (perhaps from a library's constructor
// or inside another thread's dlopen) need not enter the dynamic loader; a call before that
// resolves it then.
std::atomic<SetStackSize> next{nullptr};
__attribute__((constructor)) void ResolveNext() { next.store(Next(), std::memory_order_release); }

}  // namespace

// Interposes glibc's pthread_attr_setstacksize for the whole process: the executable's
// definition comes first in symbol lookup (it is exported, see BUILD), so shared libraries such
// as civetweb bind to it, their versioned references included (an unversioned definition
// satisfies them); it floors the size and forwards to the next definition, glibc's.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, std::size_t size) noexcept {
  SetStackSize forward = next.load(std::memory_order_acquire);
  if (forward == nullptr) {
    forward = Next();
    if (forward == nullptr) return ENOSYS;
    next.store(forward, std::memory_order_release);
  }
  return forward(attr, prl::FlooredThreadStackBytes(size));
}
