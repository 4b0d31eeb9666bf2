#include "demix/eval/progress.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

namespace demix::eval {
namespace {

// The log lines a Progress writes while `steps` run, captured from spdlog.
template <class Steps>
std::string logged(Steps&& steps) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
  steps();
  spdlog::set_default_logger(previous);
  return out.str();
}

TEST(ProgressTest, SaysWhereItIsAndHowLongIsLeft) {
  const auto text = logged([] {
    Progress progress("eval", 10, /*interval_seconds=*/0);
    progress.stage("humour/test");
    progress.advance(4, 400);
  });
  EXPECT_NE(text.find("eval humour/test: 4/10 blocks, "), std::string::npos) << text;
  EXPECT_NE(text.find(" tokens/s, "), std::string::npos) << text;
  EXPECT_NE(text.find(" left"), std::string::npos) << text;
}

TEST(ProgressTest, LogsAtMostOncePerIntervalAndNotWhenDone) {
  const auto text = logged([] {
    Progress progress("eval", 100);  // the default interval: seconds, not batches
    for (int i = 0; i < 100; ++i) progress.advance(1, 100);
  });
  EXPECT_EQ(text, "");
  const auto done = logged([] {
    Progress progress("eval", 2, 0);
    progress.advance(2, 200);
  });
  EXPECT_EQ(done, "");
}

}  // namespace
}  // namespace demix::eval
