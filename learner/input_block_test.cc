#include "learner/input_block.h"

#include <vector>

#include "ATen/ATen.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

// A batch's columns as the feed stages them on a GPU: views of one byte block, each at a
// 256-byte boundary, with an int64 column the agent does not read between two of them.
struct Staged {
  at::Tensor block, obs, action, reward, steps, next_obs;
};

// `lead` bytes of the block before the first column (the views then start at a storage offset);
// `reversed`: the columns in the opposite order (next_obs lowest).
Staged StageColumns(const at::Tensor& obs, const at::Tensor& action, const at::Tensor& reward,
                    const at::Tensor& next_obs, bool reversed = false, int64_t lead = 0) {
  const std::vector<at::Tensor> in = {obs, action, reward, at::arange(reward.size(0)), next_obs};
  std::vector<int64_t> offsets;
  int64_t end = lead;
  for (const at::Tensor& t : in) {
    offsets.push_back(end);
    end += (static_cast<int64_t>(t.nbytes()) + 255) / 256 * 256;
  }
  if (reversed) {  // the same columns in another order
    int64_t at_ = lead;
    for (int i = static_cast<int>(in.size()) - 1; i >= 0; --i) {
      offsets[i] = at_;
      at_ += (static_cast<int64_t>(in[i].nbytes()) + 255) / 256 * 256;
    }
  }
  Staged s;
  s.block = at::empty({end}, at::kByte);
  std::vector<at::Tensor> views;
  for (size_t i = 0; i < in.size(); ++i) {
    at::Tensor v = s.block.narrow(0, offsets[i], static_cast<int64_t>(in[i].nbytes()))
                       .view(in[i].scalar_type())
                       .view(in[i].sizes());
    v.copy_(in[i]);
    views.push_back(v);
  }
  s.obs = views[0];
  s.action = views[1];
  s.reward = views[2];
  s.steps = views[3];
  s.next_obs = views[4];
  return s;
}

at::Tensor Random(std::vector<int64_t> shape) { return at::randn(shape); }

TEST(LayoutInOneBlockTest, SeparateTensorsAreNotInOneBlock) {
  const at::Tensor a = Random({8, 3}), b = Random({8});
  EXPECT_FALSE(LayoutInOneBlock({&a, &b}).has_value());
  const at::Tensor none;
  EXPECT_FALSE(LayoutInOneBlock({&none}).has_value());
}

TEST(LayoutInOneBlockTest, ViewsOfOneBlockHaveTheirOffsets) {
  const Staged s = StageColumns(Random({8, 3}), Random({8, 2}), Random({8}), Random({8, 3}));
  const at::Tensor none;
  const std::optional<BlockLayout> layout =
      LayoutInOneBlock({&s.obs, &s.action, &none, &s.reward, &s.next_obs});
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->offsets, (std::vector<int64_t>{0, 256, -1, 512, 1024}));
  EXPECT_EQ(layout->span_bytes, 1024 + 8 * 3 * 4);
}

TEST(LayoutInOneBlockTest, RefusesOverlappingTensors) {
  const at::Tensor block = Random({64});
  const at::Tensor a = block.narrow(0, 0, 16), b = block.narrow(0, 8, 16);
  const at::Tensor c = block.narrow(0, 16, 16);
  EXPECT_FALSE(LayoutInOneBlock({&a, &b}).has_value());
  EXPECT_FALSE(LayoutInOneBlock({&a, &a}).has_value());  // one tensor as two fields
  EXPECT_TRUE(LayoutInOneBlock({&a, &c}).has_value());   // adjacent is fine
}

TEST(LayoutInOneBlockTest, RefusesStridedViewsMisalignedOnesAndSparseSpans) {
  const at::Tensor big = Random({4096, 4});
  const at::Tensor column = big.select(1, 0);  // not contiguous
  const at::Tensor row = big[0];
  EXPECT_FALSE(LayoutInOneBlock({&column, &row}).has_value());
  const at::Tensor first = big[0], last = big[4095];  // 64 KiB apart for 32 bytes
  EXPECT_FALSE(LayoutInOneBlock({&first, &last}).has_value());
  const at::Tensor near = big[1];
  EXPECT_TRUE(LayoutInOneBlock({&first, &near}).has_value());
  // offsets count from the lowest start: a float 3 bytes above a byte cannot be mirrored at an
  // aligned offset of a copy
  const at::Tensor bytes = at::zeros({64}, at::kByte);
  const at::Tensor c = bytes.narrow(0, 1, 1);
  const at::Tensor a = bytes.narrow(0, 4, 8).view(at::kFloat);
  const at::Tensor b = bytes.narrow(0, 16, 8);
  EXPECT_FALSE(LayoutInOneBlock({&c, &a, &b}).has_value());
  EXPECT_TRUE(LayoutInOneBlock({&a, &b}).has_value());
}

TEST(InputBlockTest, SeparateTensorsGetSeparateInputsAndOneCopyEach) {
  const at::Tensor obs = Random({8, 3}), reward = Random({8}), none;
  at::Tensor in_obs, in_reward, in_none;
  const InputBlock block({&obs, &reward, &none}, {&in_obs, &in_reward, &in_none});
  EXPECT_FALSE(block.packed());
  EXPECT_FALSE(in_none.defined());
  const at::Tensor obs2 = Random({8, 3}), reward2 = Random({8});
  EXPECT_EQ(block.Fill({&obs2, &reward2, &none}, {&in_obs, &in_reward, &in_none}), 2);
  EXPECT_TRUE(at::equal(in_obs, obs2));
  EXPECT_TRUE(at::equal(in_reward, reward2));
}

TEST(InputBlockTest, AStagedBatchIsCopiedInOneTransfer) {
  const Staged like = StageColumns(Random({8, 3}), Random({8, 2}), Random({8}), Random({8, 3}));
  const at::Tensor none;
  at::Tensor obs, action, reward, next_obs, weight;
  const InputBlock block({&like.obs, &like.action, &like.reward, &like.next_obs, &none},
                         {&obs, &action, &reward, &next_obs, &weight});
  ASSERT_TRUE(block.packed());
  EXPECT_FALSE(weight.defined());
  // the inputs mirror the source's layout, in a block of their own
  const std::optional<BlockLayout> mine = LayoutInOneBlock({&obs, &action, &reward, &next_obs});
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(*mine, *LayoutInOneBlock({&like.obs, &like.action, &like.reward, &like.next_obs}));
  EXPECT_NE(obs.data_ptr(), like.obs.data_ptr());

  const at::Tensor o = Random({8, 3}), a = Random({8, 2}), r = Random({8}), n = Random({8, 3});
  const Staged next = StageColumns(o, a, r, n);
  const std::vector<at::Tensor*> into = {&obs, &action, &reward, &next_obs, &weight};
  EXPECT_EQ(block.Fill({&next.obs, &next.action, &next.reward, &next.next_obs, &none}, into), 1);
  EXPECT_TRUE(at::equal(obs, o));
  EXPECT_TRUE(at::equal(action, a));
  EXPECT_TRUE(at::equal(reward, r));
  EXPECT_TRUE(at::equal(next_obs, n));

  // laid out otherwise, or not in one block: a copy per tensor, the same values
  const at::Tensor o2 = Random({8, 3}), a2 = Random({8, 2}), r2 = Random({8}), n2 = Random({8, 3});
  const Staged reversed = StageColumns(o2, a2, r2, n2, /*reversed=*/true);
  EXPECT_EQ(
      block.Fill({&reversed.obs, &reversed.action, &reversed.reward, &reversed.next_obs, &none},
                 into),
      4);
  EXPECT_TRUE(at::equal(obs, o2));
  EXPECT_TRUE(at::equal(action, a2));
  EXPECT_TRUE(at::equal(reward, r2));
  EXPECT_TRUE(at::equal(next_obs, n2));
  const at::Tensor o3 = Random({8, 3}), a3 = Random({8, 2}), r3 = Random({8}), n3 = Random({8, 3});
  EXPECT_EQ(block.Fill({&o3, &a3, &r3, &n3, &none}, into), 4);
  EXPECT_TRUE(at::equal(obs, o3));
  EXPECT_TRUE(at::equal(next_obs, n3));
}

// A block that starts inside its storage, its lowest view not the first field: the single
// copy reads the right bytes.
TEST(InputBlockTest, ABlockAtAnOffsetInItsStorageIsCopiedFromThere) {
  const Staged like = StageColumns(Random({8, 3}), Random({8, 2}), Random({8}), Random({8, 3}),
                                   /*reversed=*/true, /*lead=*/768);
  at::Tensor obs, action, reward, next_obs;
  const std::vector<at::Tensor*> into = {&obs, &action, &reward, &next_obs};
  const InputBlock block({&like.obs, &like.action, &like.reward, &like.next_obs}, into);
  ASSERT_TRUE(block.packed());
  const at::Tensor o = Random({8, 3}), a = Random({8, 2}), r = Random({8}), n = Random({8, 3});
  const Staged next = StageColumns(o, a, r, n, /*reversed=*/true, /*lead=*/1280);
  EXPECT_GT(next.next_obs.storage_offset(), 0);
  EXPECT_EQ(block.Fill({&next.obs, &next.action, &next.reward, &next.next_obs}, into), 1);
  EXPECT_TRUE(at::equal(obs, o));
  EXPECT_TRUE(at::equal(action, a));
  EXPECT_TRUE(at::equal(reward, r));
  EXPECT_TRUE(at::equal(next_obs, n));
}

TEST(InputBlockTest, AShapeOtherThanTheInputsDies) {
  const at::Tensor obs = Random({8, 3});
  at::Tensor in;
  const InputBlock block({&obs}, {&in});
  const at::Tensor wrong = Random({4, 3});
  EXPECT_DEATH(block.Fill({&wrong}, {&in}), "tensor 0 differs");
}

}  // namespace
}  // namespace prl::learner
