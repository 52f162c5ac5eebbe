// line_reader: lines come out identical wherever the chunk boundaries fall.
#include "agent/sources/kube/line_reader.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using sluice::kube::line_reader;

namespace {

const std::string sample =
    "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n"
    "{\"type\":\"MODIFIED\"}\r\n"
    "\n"
    "x\n"
    "{\"type\":\"DELETED\",\"object\":{\"b\":\"" +
    std::string(300, 'z') + "\"}}\n";

const std::vector<std::string> expected = {
    "{\"type\":\"ADDED\",\"object\":{\"a\":1}}",
    "{\"type\":\"MODIFIED\"}",
    "x",
    "{\"type\":\"DELETED\",\"object\":{\"b\":\"" + std::string(300, 'z') + "\"}}",
};

std::vector<std::string> feed_all(line_reader& r, const std::vector<std::string_view>& chunks) {
  std::vector<std::string> out;
  for (auto c : chunks) {
    REQUIRE(r.feed(c, [&](std::string_view l) {
      out.emplace_back(l);
      return true;
    }) == line_reader::feed_result::ok);
  }
  return out;
}

}  // namespace

TEST_CASE("line_reader: one chunk") {
  line_reader r;
  CHECK(feed_all(r, {sample}) == expected);
  CHECK(r.pending().empty());
}

TEST_CASE("line_reader: every split position into two and three chunks") {
  const std::string_view s = sample;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    line_reader r;
    CHECK(feed_all(r, {s.substr(0, i), s.substr(i)}) == expected);
    for (std::size_t j = i; j <= s.size(); j += 7) {
      line_reader r3;
      CHECK(feed_all(r3, {s.substr(0, i), s.substr(i, j - i), s.substr(j)}) == expected);
    }
  }
}

TEST_CASE("line_reader: byte by byte") {
  line_reader r;
  std::vector<std::string_view> chunks;
  for (std::size_t i = 0; i < sample.size(); ++i) {
    chunks.push_back(std::string_view(sample).substr(i, 1));
  }
  CHECK(feed_all(r, chunks) == expected);
}

TEST_CASE("line_reader: a 700 KB line over many chunks, then a partial line stays pending") {
  const std::string big = std::string(700 * 1024, 'q');
  const std::string stream = big + "\nab";
  line_reader r;
  std::vector<std::string_view> chunks;
  for (std::size_t i = 0; i < stream.size(); i += 4093) {
    chunks.push_back(std::string_view(stream).substr(i, 4093));
  }
  const auto lines = feed_all(r, chunks);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == big);
  CHECK(r.pending() == "ab");
  r.reset();
  CHECK(r.pending().empty());
}

TEST_CASE("line_reader: a line over the bound is an error, in one chunk or spread") {
  line_reader r(10);
  CHECK(r.feed("0123456789\n", [](std::string_view) { return true; }) ==
        line_reader::feed_result::ok);
  CHECK(r.feed("0123456789A\n", [](std::string_view) { return true; }) ==
        line_reader::feed_result::line_too_long);
  line_reader r2(10);
  CHECK(r2.feed("012345", [](std::string_view) { return true; }) == line_reader::feed_result::ok);
  CHECK(r2.feed("6789A", [](std::string_view) { return true; }) ==
        line_reader::feed_result::line_too_long);
}

TEST_CASE("line_reader: the callback can stop the feed") {
  line_reader r;
  int n = 0;
  CHECK(r.feed("a\nb\nc\n", [&](std::string_view) { return ++n < 2; }) ==
        line_reader::feed_result::stopped);
  CHECK(n == 2);
}
