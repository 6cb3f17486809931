// Option parsing: config files, command-line overrides, and the error for every kind of bad
// input naming the key. Also the shipped configs parse and validate.
#include <seqpar/train/data.h>
#include <seqpar/train/options.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>

using seqpar::train::OptionsError;
using seqpar::train::TrainOptions;

namespace {

std::string write_config(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("seqpar_test_" + name + ".ini");
  std::ofstream(path) << text;
  return path.string();
}

TrainOptions parse(std::vector<std::string> args) {
  args.insert(args.begin(), "seqpar-train");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  TrainOptions o;
  seqpar::train::parse_options(static_cast<int>(argv.size()), argv.data(), o);
  return o;
}

std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const OptionsError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Options, ConfigThenCommandLineOverride) {
  auto cfg = write_config("ok", "# comment\nsteps = 7\nd_model = 48\nheads = 4\nlr = 0.01\n"
                                "data = a.txt, b.txt\nrotation = true\n");
  auto o = parse({"--config", cfg, "--steps", "9"});
  EXPECT_EQ(o.steps, 9);
  EXPECT_EQ(o.d_model, 48);
  EXPECT_DOUBLE_EQ(o.lr, 0.01);
  EXPECT_TRUE(o.rotation);
  ASSERT_EQ(o.data.size(), 2u);
  EXPECT_EQ(o.data[1], "b.txt");
}

TEST(Options, UnknownKeysAreErrors) {
  auto cfg = write_config("unknown", "steps = 3\nlearning_rate = 0.1\n");
  auto msg = error_of({"--config", cfg});
  EXPECT_NE(msg.find("learning_rate"), std::string::npos) << msg;
  EXPECT_NE(msg.find(cfg), std::string::npos) << msg;
  msg = error_of({"--bogus", "1"});
  EXPECT_NE(msg.find("bogus"), std::string::npos) << msg;
}

TEST(Options, BadValuesNameTheKey) {
  auto cfg = write_config("badvalue", "steps = many\n");
  auto msg = error_of({"--config", cfg});
  EXPECT_NE(msg.find("steps"), std::string::npos) << msg;
  msg = error_of({"--heads", "5", "--d_model", "64"});
  EXPECT_NE(msg.find("'heads'"), std::string::npos) << msg;
  msg = error_of({"--lr", "-1"});
  EXPECT_NE(msg.find("'lr'"), std::string::npos) << msg;
  msg = error_of({"--task", "poetry"});
  EXPECT_NE(msg.find("'task'"), std::string::npos) << msg;
  msg = error_of({"--model", "transformer"});
  EXPECT_NE(msg.find("'model'"), std::string::npos) << msg;
  msg = error_of({"--sp_algo", "butterfly"});
  EXPECT_NE(msg.find("'sp_algo'"), std::string::npos) << msg;
  msg = error_of({"--rotation", "maybe"});
  EXPECT_NE(msg.find("rotation"), std::string::npos) << msg;
  msg = error_of({"--config", "/nonexistent/x.ini"});
  EXPECT_NE(msg.find("/nonexistent/x.ini"), std::string::npos) << msg;
}

TEST(Options, ShippedConfigsValidate) {
  for (const char* name : {"quickstart", "single_gpu", "multi_node", "mqar_compare", "s5_compare"}) {
    const std::string path = std::string(SEQPAR_SOURCE_DIR) + "/configs/" + name + ".ini";
    EXPECT_NO_THROW(parse({"--config", path})) << path << ": " << error_of({"--config", path});
  }
  auto q = parse({"--config", std::string(SEQPAR_SOURCE_DIR) + "/configs/quickstart.ini"});
  EXPECT_GE(q.seq_len, 131072);
}

TEST(Options, FingerprintTracksModelKeys) {
  auto a = parse({}), b = parse({"--d_model", "128"}), c = parse({"--metrics", "x.jsonl"});
  EXPECT_NE(seqpar::train::fingerprint(a), seqpar::train::fingerprint(b));
  EXPECT_EQ(seqpar::train::fingerprint(a), seqpar::train::fingerprint(c));
  // Keys added later change the fingerprint only where set and where they apply, so earlier
  // checkpoints keep theirs.
  auto gla = parse({"--model", "gla"}), gla_norm = parse({"--model", "gla", "--qk_l2norm", "true"});
  auto man_norm = parse({"--qk_l2norm", "true"});
  EXPECT_NE(seqpar::train::fingerprint(gla), seqpar::train::fingerprint(gla_norm));
  EXPECT_NE(seqpar::train::fingerprint(gla_norm).find("qk_l2norm=1"), std::string::npos);
  EXPECT_EQ(seqpar::train::fingerprint(gla).find("qk_l2norm"), std::string::npos);
  EXPECT_EQ(seqpar::train::fingerprint(a), seqpar::train::fingerprint(man_norm));
  // Recomputation changes the memory, not the model: checkpoints move freely between the two.
  auto sliced = parse({"--model", "gla", "--sp", "1", "--matrix_recompute_tokens", "4096"});
  EXPECT_EQ(seqpar::train::fingerprint(gla), seqpar::train::fingerprint(sliced));
}

TEST(Options, SpAlgoNamesAnExchangeAndStaysOutOfTheFingerprint) {
  auto a = parse({}), ring = parse({"--sp_algo", "ring"});
  EXPECT_EQ(a.sp_algo, "auto");
  EXPECT_EQ(ring.sp_algo, "ring");
  EXPECT_EQ(seqpar::train::fingerprint(a), seqpar::train::fingerprint(ring));
  auto cfg = write_config("sp_algo", "sp_algo = allgather\n");
  EXPECT_EQ(parse({"--config", cfg}).sp_algo, "allgather");
}

// save_every is the training checkpoint interval; the old key still works, with a deprecation
// message on stderr, and loses to save_every when both are given.
TEST(Options, CheckpointEveryIsTheDeprecatedSaveEvery) {
  EXPECT_EQ(parse({"--save_every", "7"}).save_every, 7);
  testing::internal::CaptureStderr();
  const auto old = parse({"--checkpoint_every", "5"});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(old.save_every, 5);
  EXPECT_NE(err.find("'checkpoint_every' is deprecated"), std::string::npos) << err;
  auto cfg = write_config("old_key", "checkpoint_every = 4\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(parse({"--config", cfg}).save_every, 4);
  testing::internal::GetCapturedStderr();
  testing::internal::CaptureStderr();
  EXPECT_EQ(parse({"--checkpoint_every", "5", "--save_every", "3"}).save_every, 3);
  testing::internal::GetCapturedStderr();
  EXPECT_NE(error_of({"--save_every", "-1"}).find("'save_every'"), std::string::npos);
}

TEST(Options, ModelIsAKind) {
  EXPECT_EQ(parse({}).model, seqpar::models::ModelKind::kManifold);
  EXPECT_EQ(parse({"--model", "gated_deltanet"}).model, seqpar::models::ModelKind::kGatedDeltaNet);
  EXPECT_NE(seqpar::train::fingerprint(parse({"--model", "psm"})).find("model=psm\n"),
            std::string::npos);
}

// second_order: parsed from the command line and a config, refused with rotation,
// pack_documents or another model (the message names the key), and not in the fingerprint
// (the same model to rounding, so checkpoints move freely between the two).
TEST(Options, SecondOrderRefusalsNameTheKey) {
  EXPECT_FALSE(parse({}).second_order);
  EXPECT_TRUE(parse({"--second_order", "true"}).second_order);
  auto cfg = write_config("second_order", "second_order = true\n");
  EXPECT_TRUE(parse({"--config", cfg}).second_order);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--second_order", "true", "--rotation", "true"},
           {"--second_order", "true", "--pack_documents", "true"},
           {"--second_order", "true", "--model", "gla"}}) {
    const auto msg = error_of(args);
    EXPECT_NE(msg.find("'second_order'"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of({"--second_order", "true", "--rotation", "true"}).find("rotation"),
            std::string::npos);
  EXPECT_NE(error_of({"--second_order", "true", "--pack_documents", "true"}).find("pack_documents"),
            std::string::npos);
  EXPECT_EQ(seqpar::train::fingerprint(parse({})),
            seqpar::train::fingerprint(parse({"--second_order", "true"})));
}

// linoss: a model family of its own (in the fingerprint), refused with rotation and
// pack_documents, the message naming the key.
TEST(Options, LinossIsAModelWithItsRefusals) {
  EXPECT_EQ(parse({"--model", "linoss"}).model, seqpar::models::ModelKind::kLinoss);
  EXPECT_NE(seqpar::train::fingerprint(parse({"--model", "linoss"})).find("model=linoss\n"),
            std::string::npos);
  auto msg = error_of({"--model", "linoss", "--rotation", "true"});
  EXPECT_NE(msg.find("'rotation'"), std::string::npos) << msg;
  msg = error_of({"--model", "linoss", "--pack_documents", "true"});
  EXPECT_NE(msg.find("'pack_documents'"), std::string::npos) << msg;
  msg = error_of({"--model", "linoss", "--second_order", "true"});
  EXPECT_NE(msg.find("'second_order'"), std::string::npos) << msg;
  msg = error_of({"--model", "linos"});
  EXPECT_NE(msg.find("linoss"), std::string::npos) << msg;
}

TEST(Options, MatrixRecomputeNeedsOneSpRank) {
  const auto msg = error_of({"--model", "gla", "--sp", "2", "--matrix_recompute_tokens", "4096"});
  EXPECT_NE(msg.find("'matrix_recompute_tokens'"), std::string::npos) << msg;
  EXPECT_NE(error_of({"--matrix_recompute_tokens", "-1", "--sp", "1"}).find("'matrix_recompute_tokens'"),
            std::string::npos);
}

// S5 data: token ids are the 120 permutations in lexicographic order; the first target is the
// first token, every later target the token composed after the previous target (checked with
// permutations rebuilt here); a slice equals the same range of the whole sequence; validation
// sequences have val_length tokens.
TEST(Tasks, S5TargetsComposeTheTokens) {
  std::vector<std::array<int, 5>> perms;
  std::array<int, 5> p{0, 1, 2, 3, 4};
  do perms.push_back(p);
  while (std::next_permutation(p.begin(), p.end()));
  auto o = parse({"--task", "s5", "--seq_len", "50", "--val_length", "500"});
  seqpar::train::validate(o);
  auto task = seqpar::train::make_task(o);
  EXPECT_EQ(task->val_length(), 500);
  auto whole = task->train_slice(3, 2, 0, 50);
  for (int64_t b = 0; b < 2; ++b) {
    auto in = whole.inputs[b], tg = whole.targets[b];
    EXPECT_EQ(tg[0].item<int64_t>(), in[0].item<int64_t>());
    for (int64_t t = 1; t < 50; ++t) {
      const auto& g = perms.at(in[t].item<int64_t>());
      const auto& prev = perms.at(tg[t - 1].item<int64_t>());
      std::array<int, 5> want;
      for (int i = 0; i < 5; ++i) want[i] = g[prev[i]];
      EXPECT_EQ(perms.at(tg[t].item<int64_t>()), want) << "t=" << t;
    }
  }
  EXPECT_TRUE(whole.weights.eq(1).all().item<bool>());
  auto part = task->train_slice(3, 2, 17, 41);
  EXPECT_TRUE(torch::equal(part.targets, whole.targets.slice(1, 17, 41)));
  EXPECT_TRUE(torch::equal(part.inputs, whole.inputs.slice(1, 17, 41)));
  EXPECT_NE(error_of({"--task", "mqar", "--val_length", "10"}).find("val_length"), std::string::npos);
  EXPECT_NE(error_of({"--task", "s5", "--perm_elements", "6"}).find("perm_elements"), std::string::npos);
  // S3: 6 tokens, the same composition rule.
  auto s3 = seqpar::train::make_task(parse({"--task", "s5", "--perm_elements", "3", "--seq_len", "40"}));
  auto x = s3->train_slice(0, 1, 0, 40);
  EXPECT_LT(x.inputs.max().item<int64_t>(), 6);
  EXPECT_LT(x.targets.max().item<int64_t>(), 6);
  EXPECT_EQ(x.targets[0][0].item<int64_t>(), x.inputs[0][0].item<int64_t>());
}

// pack_documents: every file of the corpus a document. The files here are runs of one letter
// each ('a', 'b', ...), so a document starts exactly where the letter changes (including where
// the training part wraps round to its first file); the starts from the index alone must be
// those changes, for every sequence, on every sp slice, and in the validation sequence. Rows
// without packing carry no documents, and the keys that cannot pack are refused by name.
TEST(Tasks, PackedDocumentsAreTheFiles) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "seqpar_test_pack_corpus";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::vector<int64_t> sizes = {30, 1, 50, 7, 200, 20};  // 308 bytes, 246 for training
  for (size_t i = 0; i < sizes.size(); ++i)
    std::ofstream(dir / ("f" + std::to_string(i))) << std::string(sizes[i], static_cast<char>('a' + i));
  auto letter_changes = [](const at::Tensor& inputs) {
    std::vector<int64_t> cu{0};
    for (int64_t t = 1; t < inputs.size(0); ++t)
      if (inputs[t].item<int64_t>() != inputs[t - 1].item<int64_t>()) cu.push_back(t);
    cu.push_back(inputs.size(0));
    return cu;
  };
  auto o = parse({"--data", dir.string(), "--seq_len", "300", "--val_fraction", "0.2",
                  "--pack_documents", "true"});
  auto task = seqpar::train::make_task(o);
  for (int64_t index = 0; index < 20; ++index) {
    const auto whole = task->train_slice(index, 2, 0, 300);
    ASSERT_EQ(whole.documents.size(), 2u);
    for (int64_t b = 0; b < 2; ++b) {
      const auto want = letter_changes(whole.inputs[b]);
      const auto got = whole.documents[b];
      EXPECT_EQ(std::vector<int64_t>(got.data_ptr<int64_t>(), got.data_ptr<int64_t>() + got.numel()),
                want) << "sequence " << index + b;
    }
    // An sp slice carries the whole sequence's starts.
    const auto part = task->train_slice(index, 2, 120, 180);
    EXPECT_TRUE(torch::equal(part.documents.at(1), whole.documents.at(1)));
  }
  const auto val = task->val_slice(0, 0, task->val_length());
  ASSERT_EQ(val.documents.size(), 1u);
  const auto want = letter_changes(val.inputs[0]);
  EXPECT_EQ(want.size(), 3u);  // the held-out part: the end of 'e', then 'f'
  EXPECT_TRUE(torch::equal(val.documents[0], torch::tensor(want, torch::kInt64)));

  o.pack_documents = false;
  EXPECT_TRUE(seqpar::train::make_task(o)->train_slice(0, 1, 0, 300).documents.empty());
  fs::remove_all(dir);

  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--task", "copy"}, {"--model", "psm"}, {"--energy_lambda", "0.1"},
           {"--model", "gla", "--sp", "1", "--matrix_recompute_tokens", "64"}}) {
    auto args = bad;
    args.insert(args.end(), {"--pack_documents", "true"});
    const auto msg = error_of(args);
    EXPECT_NE(msg.find("'pack_documents'"), std::string::npos) << bad[0] << ": " << msg;
  }
  auto packed = parse({"--pack_documents", "true"});
  EXPECT_NE(seqpar::train::fingerprint(packed).find("pack_documents=1"), std::string::npos);
  EXPECT_EQ(seqpar::train::fingerprint(parse({})).find("pack_documents"), std::string::npos);
}

}  // namespace
