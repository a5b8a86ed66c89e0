#include "learner/input_block.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "common/logging.h"

namespace prl::learner {
namespace {

// Slack LayoutInOneBlock allows between a set's bytes and its span.
constexpr int64_t kSlackBytes = 4096;

const char* Start(const at::Tensor& t) { return static_cast<const char*>(t.data_ptr()); }

// The bytes [start, start + span) of t's storage, where t's data begins at start + offset.
at::Tensor BlockBytes(const at::Tensor& t, int64_t offset, int64_t span) {
  const int64_t start = t.storage_offset() * static_cast<int64_t>(t.element_size()) - offset;
  return at::empty({0}, t.options().dtype(at::kByte)).set_(t.storage(), start, {span}, {1});
}

}  // namespace

std::optional<BlockLayout> LayoutInOneBlock(absl::Span<const at::Tensor* const> tensors) {
  const at::Tensor* first = nullptr;
  const char* lowest = nullptr;
  const char* highest = nullptr;
  int64_t bytes = 0;
  for (const at::Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!t->is_contiguous()) return std::nullopt;
    if (first == nullptr) {
      first = t;
    } else if (t->device() != first->device() || !t->storage().is_alias_of(first->storage())) {
      return std::nullopt;
    }
    const char* start = Start(*t);
    const int64_t n = static_cast<int64_t>(t->nbytes());
    lowest = lowest == nullptr ? start : std::min(lowest, start);
    highest = highest == nullptr ? start + n : std::max(highest, start + n);
    bytes += n;
  }
  if (first == nullptr) return std::nullopt;
  // no two overlap: copies laid out the same way would overlap too, and a copy into one field
  // would overwrite another
  std::vector<std::pair<const char*, const char*>> ranges;
  for (const at::Tensor* t : tensors) {
    if (t->defined() && t->nbytes() > 0) {
      ranges.emplace_back(Start(*t), Start(*t) + t->nbytes());
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return std::nullopt;
  }
  BlockLayout layout;
  layout.span_bytes = highest - lowest;
  if (layout.span_bytes > 2 * bytes + kSlackBytes) return std::nullopt;
  for (const at::Tensor* t : tensors) {
    if (!t->defined()) {
      layout.offsets.push_back(-1);
      continue;
    }
    const int64_t offset = Start(*t) - lowest;
    // a copy's views of its block must be aligned for their element type
    if (offset % static_cast<int64_t>(t->element_size()) != 0) return std::nullopt;
    layout.offsets.push_back(offset);
  }
  return layout;
}

InputBlock::InputBlock(absl::Span<const at::Tensor* const> like,
                       absl::Span<at::Tensor* const> out) {
  PRL_CHECK(like.size() == out.size())
      << "InputBlock: " << like.size() << " tensors, " << out.size() << " outputs";
  layout_ = LayoutInOneBlock(like);
  if (!layout_.has_value()) {
    for (size_t i = 0; i < like.size(); ++i) {
      *out[i] = like[i]->defined() ? at::empty_like(*like[i], at::MemoryFormat::Contiguous)
                                   : at::Tensor();
    }
    return;
  }
  const at::Tensor* first = nullptr;
  for (const at::Tensor* t : like) {
    if (t->defined()) {
      first = t;
      break;
    }
  }
  block_ = at::empty({layout_->span_bytes}, first->options().dtype(at::kByte));
  for (size_t i = 0; i < like.size(); ++i) {
    const at::Tensor& t = *like[i];
    if (!t.defined()) {
      *out[i] = at::Tensor();
      continue;
    }
    *out[i] = block_.narrow(0, layout_->offsets[i], static_cast<int64_t>(t.nbytes()))
                  .view(t.scalar_type())
                  .view(t.sizes());
  }
}

int InputBlock::Fill(absl::Span<const at::Tensor* const> from,
                     absl::Span<at::Tensor* const> into) const {
  PRL_CHECK(from.size() == into.size())
      << "InputBlock::Fill: " << from.size() << " tensors, " << into.size() << " inputs";
  for (size_t i = 0; i < from.size(); ++i) {
    PRL_CHECK(from[i]->defined() == into[i]->defined() &&
              (!from[i]->defined() || (from[i]->sizes() == into[i]->sizes() &&
                                       from[i]->scalar_type() == into[i]->scalar_type())))
        << "InputBlock::Fill: tensor " << i << " differs from the input it fills";
  }
  if (layout_.has_value()) {
    const std::optional<BlockLayout> source = LayoutInOneBlock(from);
    if (source.has_value() && *source == *layout_) {
      for (size_t i = 0; i < from.size(); ++i) {
        if (!from[i]->defined()) continue;
        block_.copy_(BlockBytes(*from[i], layout_->offsets[i], layout_->span_bytes),
                     /*non_blocking=*/true);
        return 1;
      }
    }
  }
  int copies = 0;
  for (size_t i = 0; i < from.size(); ++i) {
    if (!from[i]->defined()) continue;
    into[i]->copy_(*from[i], /*non_blocking=*/true);
    ++copies;
  }
  return copies;
}

}  // namespace prl::learner
