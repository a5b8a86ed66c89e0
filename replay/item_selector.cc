#include "replay/item_selector.h"

#include <cmath>

#include "absl/random/distributions.h"
#include "common/logging.h"

namespace prl::replay {

// ---- uniform ----

void UniformSelector::Insert(uint64_t key, double) {
  index_[key] = keys_.size();
  keys_.push_back(key);
}

void UniformSelector::Delete(uint64_t key) {
  auto it = index_.find(key);
  PRL_CHECK(it != index_.end()) << "unknown key " << key;
  // move the last key into the hole.
  const size_t hole = it->second;
  const uint64_t last = keys_.back();
  keys_[hole] = last;
  index_[last] = hole;
  keys_.pop_back();
  index_.erase(key);
}

ItemSelector::Selection UniformSelector::Select(absl::BitGenRef rng) {
  const size_t i = absl::Uniform<size_t>(rng, 0, keys_.size());
  return {keys_[i], 1.0 / static_cast<double>(keys_.size())};
}

// ---- FIFO / LIFO ----

ItemSelector::Selection OrderedSelector::Select(absl::BitGenRef) {
  return {newest_first_ ? *keys_.rbegin() : *keys_.begin(), 1.0};
}

// ---- prioritized ----

void PrioritizedSelector::Grow() {
  const size_t new_leaves = leaves_ == 0 ? 64 : 2 * leaves_;
  std::vector<double> old_tree = std::move(tree_);
  const size_t old_leaves = leaves_;
  leaves_ = new_leaves;
  tree_.assign(2 * leaves_ - 1, 0.0);
  key_of_.resize(leaves_, 0);
  for (size_t s = 0; s < old_leaves; ++s) tree_[leaves_ - 1 + s] = old_tree[old_leaves - 1 + s];
  for (size_t i = leaves_ - 1; i-- > 0;) tree_[i] = tree_[2 * i + 1] + tree_[2 * i + 2];
  // hand out low slots first.
  for (size_t s = leaves_; s-- > old_leaves;) free_slots_.push_back(s);
}

void PrioritizedSelector::SetLeaf(size_t slot, double weight) {
  size_t i = leaves_ - 1 + slot;
  tree_[i] = weight;
  while (i > 0) {
    i = (i - 1) / 2;
    tree_[i] = tree_[2 * i + 1] + tree_[2 * i + 2];
  }
}

void PrioritizedSelector::Insert(uint64_t key, double priority) {
  if (free_slots_.empty()) Grow();
  const size_t slot = free_slots_.back();
  free_slots_.pop_back();
  slot_of_[key] = slot;
  key_of_[slot] = key;
  all_.Insert(key, priority);
  SetLeaf(slot, std::pow(priority, exponent_));
}

void PrioritizedSelector::Update(uint64_t key, double priority) {
  auto it = slot_of_.find(key);
  PRL_CHECK(it != slot_of_.end()) << "unknown key " << key;
  SetLeaf(it->second, std::pow(priority, exponent_));
}

void PrioritizedSelector::Delete(uint64_t key) {
  auto it = slot_of_.find(key);
  PRL_CHECK(it != slot_of_.end()) << "unknown key " << key;
  SetLeaf(it->second, 0.0);
  free_slots_.push_back(it->second);
  slot_of_.erase(it);
  all_.Delete(key);
}

ItemSelector::Selection PrioritizedSelector::Select(absl::BitGenRef rng) {
  const double total = tree_[0];
  if (!(total > 0.0)) {
    // all priorities are zero: fall back to uniform over the present keys.
    return all_.Select(rng);
  }
  double u = absl::Uniform<double>(rng, 0.0, total);
  size_t i = 0;
  while (i < leaves_ - 1) {
    const size_t left = 2 * i + 1;
    if (u < tree_[left] || tree_[left + 1] <= 0.0) {
      i = left;
    } else {
      u -= tree_[left];
      i = left + 1;
    }
  }
  // rounding can land on an empty leaf at the edge; step to the nearest weighted one.
  size_t slot = i - (leaves_ - 1);
  if (tree_[i] <= 0.0) {
    for (size_t d = 1; d < leaves_; ++d) {
      if (slot >= d && tree_[leaves_ - 1 + slot - d] > 0.0) {
        slot -= d;
        break;
      }
      if (slot + d < leaves_ && tree_[leaves_ - 1 + slot + d] > 0.0) {
        slot += d;
        break;
      }
    }
  }
  return {key_of_[slot], tree_[leaves_ - 1 + slot] / total};
}

// ---- lowest priority ----

void LowestPrioritySelector::Insert(uint64_t key, double priority) {
  priority_of_[key] = priority;
  ordered_.insert({priority, key});
}

void LowestPrioritySelector::Update(uint64_t key, double priority) {
  auto it = priority_of_.find(key);
  PRL_CHECK(it != priority_of_.end()) << "unknown key " << key;
  ordered_.erase({it->second, key});
  it->second = priority;
  ordered_.insert({priority, key});
}

void LowestPrioritySelector::Delete(uint64_t key) {
  auto it = priority_of_.find(key);
  PRL_CHECK(it != priority_of_.end()) << "unknown key " << key;
  ordered_.erase({it->second, key});
  priority_of_.erase(it);
}

ItemSelector::Selection LowestPrioritySelector::Select(absl::BitGenRef) {
  return {ordered_.begin()->second, 1.0};
}

std::unique_ptr<ItemSelector> CreateSampler(v1::Sampler sampler, double priority_exponent) {
  switch (sampler) {
    case v1::SAMPLER_PRIORITIZED:
      return std::make_unique<PrioritizedSelector>(priority_exponent);
    case v1::SAMPLER_FIFO:
      return std::make_unique<OrderedSelector>(/*newest_first=*/false);
    case v1::SAMPLER_LIFO:
      return std::make_unique<OrderedSelector>(/*newest_first=*/true);
    default:
      return std::make_unique<UniformSelector>();
  }
}

std::unique_ptr<ItemSelector> CreateRemover(v1::Remover remover) {
  if (remover == v1::REMOVER_LOWEST_PRIORITY) return std::make_unique<LowestPrioritySelector>();
  return std::make_unique<OrderedSelector>(/*newest_first=*/false);
}

}  // namespace prl::replay
