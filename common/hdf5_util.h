// What DatasetWriter and ReadDataset share to use the HDF5 C++ API: one process-wide lock,
// CallHdf5 (which turns exceptions into absl::Status), Hdf5Message and h5py's bool type.
// Internal to //common: everything else uses common/dataset_writer.h and
// common/dataset_reader.h, which keep H5Cpp.h out of their users.
#ifndef PRL_COMMON_HDF5_UTIL_H_
#define PRL_COMMON_HDF5_UTIL_H_

#include <exception>
#include <new>
#include <string>

#include "H5Cpp.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace prl::internal {

// The lock every HDF5 call in the process holds (CallHdf5 takes it): the C library is built
// thread-safe, but the C++ wrappers keep process-wide state of their own. Lives for the
// whole process.
absl::Mutex& Hdf5Mutex();

// The exception's message plus the most specific entry of HDF5's error stack (e.g.
// "truncated file: eof = 800, ..."), which says far more than the C++ wrapper's message.
// Call it with Hdf5Mutex() held, on the thread that caught `e`.
std::string Hdf5Message(const H5::Exception& e);

// Runs `body` (which uses HDF5) under Hdf5Mutex() with automatic error printing off, turning
// HDF5 and other exceptions into a Status: on_hdf5_error(Hdf5Message(e)) for an
// H5::Exception, RESOURCE_EXHAUSTED for std::bad_alloc, INTERNAL for any other
// std::exception. Returns what `body` returns (absl::Status or absl::StatusOr<T>).
// Thread-safe; not reentrant (`body` must not call CallHdf5).
template <typename Body, typename OnError>
auto CallHdf5(Body body, OnError on_hdf5_error) -> decltype(body()) {
  absl::MutexLock lock(&Hdf5Mutex());
  try {
    H5::Exception::dontPrint();  // per thread in a thread-safe HDF5 build
    return body();
  } catch (const H5::Exception& e) {
    return on_hdf5_error(Hdf5Message(e));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory reading or writing an HDF5 file");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  }
}

// h5py's representation of numpy bool: an int8 enum {FALSE = 0, TRUE = 1}. Call it with
// Hdf5Mutex() held (inside CallHdf5); throws H5::Exception.
H5::EnumType BoolType();

}  // namespace prl::internal

#endif  // PRL_COMMON_HDF5_UTIL_H_
