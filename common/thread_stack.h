#ifndef PRL_COMMON_THREAD_STACK_H_
#define PRL_COMMON_THREAD_STACK_H_

#include <cstddef>

namespace prl {

// Linking //common:thread_stack raises every stack size a library asks for
// through pthread_attr_setstacksize to at least this many bytes.
//
// Why: glibc carves a thread's static TLS out of its stack, and pthread_create
// fails with EINVAL when the TLS does not fit. Debian's civetweb (the HTTP
// server behind prometheus-cpp's /metrics endpoint) starts its threads with a
// fixed 100 KiB stack, while a process that loads LibTorch with CUDA carries
// about 170 KB of static TLS (cuBLASLt alone 94 KB). Without the floor a CUDA
// build of the learner or the prior server cannot serve /metrics.
inline constexpr std::size_t kMinThreadStackBytes = std::size_t{1} << 20;

// The size pthread_attr_setstacksize stores for a request of `requested`
// bytes: max(requested, kMinThreadStackBytes).
std::size_t FlooredThreadStackBytes(std::size_t requested);

}  // namespace prl

#endif  // PRL_COMMON_THREAD_STACK_H_
