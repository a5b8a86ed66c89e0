// A shared library that calls pthread_attr_setstacksize through its own (versioned) reference,
// as civetweb does: thread_stack_test loads it to check that such callers reach the interposed
// definition.
#include <pthread.h>

#include <cstddef>

extern "C" __attribute__((visibility("default"))) int PrlProbeSetStackSize(pthread_attr_t* attr,
                                                                           std::size_t size) {
  return pthread_attr_setstacksize(attr, size);
}
