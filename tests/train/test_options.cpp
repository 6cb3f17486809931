// Option parsing: config files, command-line overrides, and the error for every kind of bad
// input naming the key. Also the shipped configs parse and validate.
#include <seqpar/train/options.h>

#include <gtest/gtest.h>

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
  msg = error_of({"--rotation", "maybe"});
  EXPECT_NE(msg.find("rotation"), std::string::npos) << msg;
  msg = error_of({"--config", "/nonexistent/x.ini"});
  EXPECT_NE(msg.find("/nonexistent/x.ini"), std::string::npos) << msg;
}

TEST(Options, ShippedConfigsValidate) {
  for (const char* name : {"quickstart", "single_gpu", "multi_node"}) {
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
}

}  // namespace
