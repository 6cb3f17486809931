// The training loop on one rank: the loss falls, a stopped-and-resumed run reproduces the
// uninterrupted run's losses bit for bit, and bad checkpoints are refused with clear errors
// without being overwritten.
#include "test_world.h"

#include <seqpar/train/checkpoint.h>
#include <seqpar/train/trainer.h>

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <unistd.h>

using namespace seqpar::train;

namespace {

std::vector<double> losses(const TrainSummary& s) {
  std::vector<double> out;
  for (const auto& r : s.history) out.push_back(r.loss);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(TrainLoop, LossFallsOverThirtySteps) {
  auto o = tiny_options();
  Trainer trainer(o, single_rank_grid(), nullptr);
  auto s = trainer.run();
  auto l = losses(s);
  ASSERT_EQ(l.size(), 30u);
  const double first = (l[0] + l[1] + l[2]) / 3, last = (l[27] + l[28] + l[29]) / 3;
  std::printf("loss: first 3 steps %.3f, last 3 steps %.3f, val %.3f, unigram %.3f\n", first,
              last, s.val_loss, s.unigram_loss);
  EXPECT_LT(last, first - 1.0);
  EXPECT_LT(s.val_loss, std::log(256.0) - 1.0);
  // The summary reports what the run needed: a host peak of at least the model's parameters
  // and at most this machine's memory; no device figure on the CPU.
  EXPECT_GT(s.peak_host_bytes, int64_t(1) << 20);
  EXPECT_LT(s.peak_host_bytes, int64_t(1) << 40);
  EXPECT_EQ(s.peak_device_bytes, -1);
}

TEST(TrainLoop, ResumeReproducesUninterruptedRun) {
  auto o = tiny_options();
  o.steps = 8;
  o.task = "copy";  // exercises a second data path; text is covered above
  o.seq_len = 256;
  o.copy_tokens = 4;
  const auto dir_a = fresh_dir("resume_a"), dir_b = fresh_dir("resume_b");
  o.checkpoint_dir = dir_a;
  auto whole = Trainer(o, single_rank_grid(), nullptr).run();

  o.checkpoint_dir = dir_b;
  o.stop_after = 5;
  auto first = Trainer(o, single_rank_grid(), nullptr).run();
  ASSERT_EQ(first.last_step, 5);
  o.stop_after = 0;
  o.resume = "latest";
  auto rest = Trainer(o, single_rank_grid(), nullptr).run();
  ASSERT_EQ(rest.first_step, 6);

  auto a = losses(whole), b = losses(first), c = losses(rest);
  b.insert(b.end(), c.begin(), c.end());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "step " << i + 1;  // bitwise
  EXPECT_EQ(whole.val_loss, rest.val_loss);
  std::filesystem::remove_all(dir_a);
  std::filesystem::remove_all(dir_b);
}

TEST(TrainLoop, KeepsTheLastKCheckpoints) {
  auto o = tiny_options();
  o.steps = 5;
  o.save_every = 1;
  o.keep_checkpoints = 2;
  o.checkpoint_dir = fresh_dir("keep");
  Trainer(o, single_rank_grid(), nullptr).run();
  auto files = list_checkpoints(o.checkpoint_dir);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], checkpoint_path(o.checkpoint_dir, 4));
  EXPECT_EQ(files[1], checkpoint_path(o.checkpoint_dir, 5));
  std::filesystem::remove_all(o.checkpoint_dir);
}

class BadCheckpoint : public testing::Test {
 protected:
  void SetUp() override {
    options_ = tiny_options();
    options_.steps = 2;
    options_.checkpoint_dir = fresh_dir("bad");
    Trainer(options_, single_rank_grid(), nullptr).run();
    path_ = checkpoint_path(options_.checkpoint_dir, 2);
    original_ = read_file(path_);
    ASSERT_GT(original_.size(), 1000u);
    options_.resume = path_;
  }
  void TearDown() override { std::filesystem::remove_all(options_.checkpoint_dir); }

  std::string resume_error(const TrainOptions& o) {
    try {
      Trainer(o, single_rank_grid(), nullptr).run();
    } catch (const CheckpointError& e) {
      return e.what();
    }
    return "(no error)";
  }
  void write(const std::string& bytes) { std::ofstream(path_, std::ios::binary) << bytes; }

  TrainOptions options_;
  std::string path_, original_;
};

TEST_F(BadCheckpoint, FlippedByteIsACorruptFile) {
  auto bytes = original_;
  bytes[bytes.size() - 100] ^= 0x5a;
  write(bytes);
  auto msg = resume_error(options_);
  EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path_), std::string::npos) << msg;
  EXPECT_EQ(read_file(path_), bytes);  // left as it was
}

TEST_F(BadCheckpoint, TruncatedFile) {
  write(original_.substr(0, original_.size() / 2));
  auto msg = resume_error(options_);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  write("garbage");
  msg = resume_error(options_);
  EXPECT_NE(msg.find("not a seqpar checkpoint"), std::string::npos) << msg;
}

TEST_F(BadCheckpoint, DifferentOptionsAreNamed) {
  auto o = options_;
  o.d_model = 64;
  o.lr = 0.5;
  auto msg = resume_error(o);
  EXPECT_NE(msg.find("d_model: checkpoint 32, this run 64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lr:"), std::string::npos) << msg;
  EXPECT_EQ(read_file(path_), original_);
}

// A checkpoint with more model tensors than this run's model (here a short convolution the
// model lacks) is refused even where options are not compared (generate mode passes no
// fingerprint), instead of loading silently without them; resuming names the option.
TEST(CheckpointModel, ExtraTensorsAreRefused) {
  auto o = tiny_options();
  o.model = seqpar::models::ModelKind::kGatedDeltaNet;
  o.conv_size = 4;
  o.steps = 1;
  o.checkpoint_dir = fresh_dir("conv");
  Trainer(o, single_rank_grid(), nullptr).run();
  const auto path = checkpoint_path(o.checkpoint_dir, 1);
  auto plain = o;
  plain.conv_size = 0;
  seqpar::models::ByteLM model(model_options(plain));
  std::string msg = "(no error)";
  try {
    load_checkpoint(path, "", model, nullptr);
  } catch (const CheckpointError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("different model"), std::string::npos) << msg;
  seqpar::models::ByteLM same(model_options(o));
  EXPECT_NO_THROW(load_checkpoint(path, "", same, nullptr));
  plain.resume = path;
  msg = "(no error)";
  try {
    Trainer(plain, single_rank_grid(), nullptr).run();
  } catch (const CheckpointError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("conv_size: checkpoint 4, this run (absent)"), std::string::npos) << msg;
  std::filesystem::remove_all(o.checkpoint_dir);
}

TEST_F(BadCheckpoint, FreshRunDoesNotOverwrite) {
  auto o = options_;
  o.resume.clear();
  auto msg = resume_error(o);
  EXPECT_NE(msg.find("already holds checkpoints"), std::string::npos) << msg;
  EXPECT_EQ(read_file(path_), original_);
}

}  // namespace
