// Item selectors: which item a replay table samples next, and which it evicts when full.
// One small interface, five strategies (uniform, prioritized with a sum tree, FIFO, LIFO and
// lowest-priority for removal). Keys are unique per table and increase with insertion order.
// Not thread-safe: the owning Table serialises every call under its mutex.
#ifndef PRL_REPLAY_ITEM_SELECTOR_H_
#define PRL_REPLAY_ITEM_SELECTOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/bit_gen_ref.h"
#include "proto/replay.pb.h"

namespace prl::replay {

class ItemSelector {
 public:
  struct Selection {
    uint64_t key = 0;
    // Probability with which this key was selected.
    double probability = 1.0;
  };

  virtual ~ItemSelector() = default;

  // Adds a key that is not present. `priority` is finite and >= 0.
  virtual void Insert(uint64_t key, double priority) = 0;
  // Changes a present key's priority.
  virtual void Update(uint64_t key, double priority) = 0;
  // Removes a present key.
  virtual void Delete(uint64_t key) = 0;
  // Selects a key; requires size() > 0.
  virtual Selection Select(absl::BitGenRef rng) = 0;
  virtual size_t size() const = 0;
};

// Every key equally likely.
class UniformSelector final : public ItemSelector {
 public:
  void Insert(uint64_t key, double priority) override;
  void Update(uint64_t key, double priority) override {}
  void Delete(uint64_t key) override;
  Selection Select(absl::BitGenRef rng) override;
  size_t size() const override { return keys_.size(); }

 private:
  std::vector<uint64_t> keys_;
  absl::flat_hash_map<uint64_t, size_t> index_;
};

// The oldest (FIFO) or newest (LIFO) key, with probability 1.
class OrderedSelector final : public ItemSelector {
 public:
  explicit OrderedSelector(bool newest_first) : newest_first_(newest_first) {}
  void Insert(uint64_t key, double priority) override { keys_.insert(key); }
  void Update(uint64_t key, double priority) override {}
  void Delete(uint64_t key) override { keys_.erase(key); }
  Selection Select(absl::BitGenRef rng) override;
  size_t size() const override { return keys_.size(); }

 private:
  const bool newest_first_;
  absl::btree_set<uint64_t> keys_;
};

// P(i) = p_i^a / sum_j p_j^a over a sum tree: O(log n) insert, update, delete and select.
// If every priority is 0, keys are selected uniformly (O(1), from a dense key list).
class PrioritizedSelector final : public ItemSelector {
 public:
  explicit PrioritizedSelector(double exponent) : exponent_(exponent) {}
  void Insert(uint64_t key, double priority) override;
  void Update(uint64_t key, double priority) override;
  void Delete(uint64_t key) override;
  Selection Select(absl::BitGenRef rng) override;
  size_t size() const override { return slot_of_.size(); }

 private:
  // Sets leaf `slot` to `weight` and recomputes its ancestors from their children, so sums
  // never drift.
  void SetLeaf(size_t slot, double weight);
  void Grow();

  const double exponent_;
  // Complete binary tree in an array: node i has children 2i+1, 2i+2; leaves start at
  // leaves_ - 1. Its size is 2 * leaves_ - 1.
  std::vector<double> tree_;
  size_t leaves_ = 0;
  std::vector<uint64_t> key_of_;  // by slot
  std::vector<size_t> free_slots_;
  absl::flat_hash_map<uint64_t, size_t> slot_of_;
  // Every key, densely, for the all-zero fallback.
  UniformSelector all_;
};

// The lowest-priority key (oldest among equals), with probability 1: eviction only.
class LowestPrioritySelector final : public ItemSelector {
 public:
  void Insert(uint64_t key, double priority) override;
  void Update(uint64_t key, double priority) override;
  void Delete(uint64_t key) override;
  Selection Select(absl::BitGenRef rng) override;
  size_t size() const override { return priority_of_.size(); }

 private:
  absl::btree_set<std::pair<double, uint64_t>> ordered_;
  absl::flat_hash_map<uint64_t, double> priority_of_;
};

// The sampler named by a table config (UNSPECIFIED = uniform).
std::unique_ptr<ItemSelector> CreateSampler(v1::Sampler sampler, double priority_exponent);
// The remover named by a table config (UNSPECIFIED = FIFO).
std::unique_ptr<ItemSelector> CreateRemover(v1::Remover remover);

}  // namespace prl::replay

#endif  // PRL_REPLAY_ITEM_SELECTOR_H_
