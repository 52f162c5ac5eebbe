#include "agent/model/model.h"

#include <doctest/doctest.h>

#include "test_helpers.h"

namespace sluice {

TEST_CASE("parse_ip reads IPv4 in network byte order") {
  const std::optional<ip_addr> addr = parse_ip("10.96.0.1");
  REQUIRE(addr);
  CHECK(addr->family == ip_family::v4);
  CHECK(addr->bytes[0] == 10);
  CHECK(addr->bytes[1] == 96);
  CHECK(addr->bytes[2] == 0);
  CHECK(addr->bytes[3] == 1);
  for (std::size_t i = 4; i < 16; ++i) {
    CHECK(addr->bytes[i] == 0);
  }
}

TEST_CASE("parse_ip reads IPv6") {
  const std::optional<ip_addr> addr = parse_ip("fd00:10:96::a");
  REQUIRE(addr);
  CHECK(addr->family == ip_family::v6);
  CHECK(addr->bytes[0] == 0xfd);
  CHECK(addr->bytes[1] == 0x00);
  CHECK(addr->bytes[2] == 0x00);
  CHECK(addr->bytes[3] == 0x10);
  CHECK(addr->bytes[15] == 0x0a);
}

TEST_CASE("parse_ip rejects what is not a plain address") {
  for (const std::string text : {"", "None", "10.96.0", "10.96.0.256", "010.96.0.1", "10.96.0.1/32",
                                 " 10.96.0.1", "fe80::1%eth0", "fd00::1::2", "db.example.com",
                                 "1111:2222:3333:4444:5555:6666:7777:8888:9999"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_ip(text));
  }
}

TEST_CASE("format_ip round-trips with parse_ip in canonical form") {
  for (const std::string text : {"0.0.0.0", "10.244.1.7", "255.255.255.255", "::", "fd00:10:96::a",
                                 "2001:db8::1:0:0:1", "::ffff:10.0.0.1"}) {
    CAPTURE(text);
    CHECK(format_ip(test::ip(text)) == text);
  }
  CHECK(format_ip(test::ip("FD00:0:0::0A")) == "fd00::a");
}

TEST_CASE("ip_addr orders IPv4 before IPv6, then by bytes") {
  CHECK(test::ip("10.0.0.2") < test::ip("10.0.0.10"));
  CHECK(test::ip("255.255.255.255") < test::ip("::1"));
  CHECK(test::ip("fd00::1") == test::ip("fd00:0::1"));
}

TEST_CASE("endpoint conditions default like kube-proxy when nil") {
  endpoint ep;
  CHECK(ep.is_ready());
  CHECK(ep.is_serving());
  CHECK_FALSE(ep.is_terminating());
  ep.ready = false;
  ep.serving = false;
  ep.terminating = true;
  CHECK_FALSE(ep.is_ready());
  CHECK_FALSE(ep.is_serving());
  CHECK(ep.is_terminating());
}

}  // namespace sluice
