#include "models/cpu_allocator.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "c10/core/Allocator.h"
#include "c10/core/CPUAllocator.h"
#include "torch/version.h"

// Allocator::allocate lost its const in torch 2.3 (and gained a pure virtual copy_data).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define PRL_ALLOCATE_CONST
#else
#define PRL_ALLOCATE_CONST const
#endif

namespace prl::models {
namespace {

constexpr size_t kAlignment = 64;  // what LibTorch's own CPU allocator guarantees

// Rounds a request up so that near sizes share blocks: 64 bytes below 64 KiB, 4 KiB above.
size_t BlockSize(size_t n) {
  const size_t granule = n <= (size_t{64} << 10) ? kAlignment : size_t{4} << 10;
  return (n + granule - 1) / granule * granule;
}

class CachingCpuAllocator;
CachingCpuAllocator* installed = nullptr;  // never deleted: tensors may outlive main

// Blocks are identified by their address (DataPtr's context is the data pointer itself, as
// c10's raw_allocate requires), with the sizes of the handed-out ones in a map.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(size_t max_cached_bytes) : max_cached_(max_cached_bytes) {}

  c10::DataPtr allocate(size_t n) PRL_ALLOCATE_CONST override {
    if (n == 0) return {nullptr, nullptr, &Release, c10::Device(c10::DeviceType::CPU)};
    const size_t size = BlockSize(n);
    void* data = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.allocations;
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        data = it->second.back();  // the most recently freed: likeliest still in cache
        it->second.pop_back();
        ++stats_.cache_hits;
        stats_.cached_bytes -= static_cast<int64_t>(size);
        live_[data] = size;
        stats_.live_bytes += static_cast<int64_t>(size);
      }
    }
    if (data == nullptr) {
      if (posix_memalign(&data, kAlignment, size) != 0) {
        // drop the cache and try once more before failing like LibTorch's allocator
        Trim();
        data = nullptr;
        TORCH_CHECK(posix_memalign(&data, kAlignment, size) == 0,
                    "CPU allocator: out of memory allocating ", n, " bytes");
      }
      std::lock_guard<std::mutex> lock(mu_);
      live_[data] = size;
      stats_.live_bytes += static_cast<int64_t>(size);
    }
    return {data, data, &Release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &Release; }

  // torch >= 2.3 declares this pure virtual; older versions simply have an extra method.
  void copy_data(void* dest, const void* src, std::size_t count) const {
    std::memcpy(dest, src, count);
  }

  CpuAllocatorStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  static void Release(void* data) {
    if (data != nullptr) installed->Free(data);
  }

  void Free(void* data) const {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(data);
      TORCH_CHECK(it != live_.end(), "CPU allocator: freeing a block it did not hand out");
      const size_t size = it->second;
      live_.erase(it);
      stats_.live_bytes -= static_cast<int64_t>(size);
      if (stats_.cached_bytes + static_cast<int64_t>(size) <= static_cast<int64_t>(max_cached_)) {
        free_[size].push_back(data);
        stats_.cached_bytes += static_cast<int64_t>(size);
        return;
      }
    }
    std::free(data);
  }

  void Trim() const {
    std::vector<void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [size, list] : free_) blocks.insert(blocks.end(), list.begin(), list.end());
      free_.clear();
      stats_.cached_bytes = 0;
    }
    for (void* b : blocks) std::free(b);
  }

  const size_t max_cached_;
  mutable std::mutex mu_;
  mutable std::unordered_map<size_t, std::vector<void*>> free_;  // by block size
  mutable std::unordered_map<void*, size_t> live_;               // handed out: their sizes
  mutable CpuAllocatorStats stats_;
};

std::mutex install_mu;

}  // namespace

void InstallCachingCpuAllocator(size_t max_cached_bytes) {
  std::lock_guard<std::mutex> lock(install_mu);
  if (installed != nullptr) return;
  installed = new CachingCpuAllocator(max_cached_bytes);
  c10::SetCPUAllocator(installed, /*priority=*/1);
}

bool CachingCpuAllocatorInstalled() {
  std::lock_guard<std::mutex> lock(install_mu);
  return installed != nullptr;
}

CpuAllocatorStats CachingCpuAllocatorStats() {
  std::lock_guard<std::mutex> lock(install_mu);
  return installed != nullptr ? installed->stats() : CpuAllocatorStats{};
}

}  // namespace prl::models
