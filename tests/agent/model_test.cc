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
  for (const std::string text : {"", "None", "10.96.0", "10.96.0.256", "0256.1.1.1", "10.96.0.1/32",
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

TEST_CASE("parse_ip accepts leading zeros as decimal, like ParseIPSloppy (TestBadIPs)") {
  const std::pair<const char*, const char*> cases[] = {
      {"172.30.0.041", "172.30.0.41"},
      {"1.2.3.004", "1.2.3.4"},
      {"192.168.099.022", "192.168.99.22"},
      {"10.180.00.001", "10.180.0.1"},
      {"010.96.0.1", "10.96.0.1"},
      {"0000000255.0.0.0", "255.0.0.0"},
      {"::ffff:010.001.2.3", "::ffff:10.1.2.3"},
  };
  for (const auto& [text, canonical] : cases) {
    CAPTURE(text);
    const std::optional<ip_addr> addr = parse_ip(text);
    REQUIRE(addr);
    CHECK(format_ip(*addr) == canonical);
  }
  // Leading zeros never make a part octal: 010 is ten, 0377 is over 255 only as decimal.
  CHECK_FALSE(parse_ip("0377.0.0.1"));
  CHECK_FALSE(parse_ip("1.2.3.4."));
  CHECK_FALSE(parse_ip("1..2.3"));
  CHECK_FALSE(parse_ip("::ffff:1.2.3.256"));
}

TEST_CASE("parse_prefix: trims spaces, checks host bits unless told, normalises") {
  const std::optional<ip_prefix> plain = parse_prefix("10.0.0.0/8");
  REQUIRE(plain);
  CHECK(plain->addr == test::ip("10.0.0.0"));
  CHECK(plain->length == 8);
  CHECK(format_prefix(*plain) == "10.0.0.0/8");

  const std::optional<ip_prefix> spaced = parse_prefix("  fd00:10::/64\t");
  REQUIRE(spaced);
  CHECK(format_prefix(*spaced) == "fd00:10::/64");

  CHECK_FALSE(parse_prefix("10.1.2.3/8"));
  const std::optional<ip_prefix> host = parse_prefix("10.1.2.3/8", true);
  REQUIRE(host);
  CHECK(format_prefix(*host) == "10.0.0.0/8");
  const std::optional<ip_prefix> odd = parse_prefix("192.168.1.255/23", true);
  REQUIRE(odd);
  CHECK(format_prefix(*odd) == "192.168.0.0/23");

  // ParseCIDRSloppy: leading zeros in the address and the length (TestBadIPs).
  const std::optional<ip_prefix> sloppy = parse_prefix("203.0.113.000/025");
  REQUIRE(sloppy);
  CHECK(format_prefix(*sloppy) == "203.0.113.0/25");

  CHECK(format_prefix(*parse_prefix("0.0.0.0/0")) == "0.0.0.0/0");
  CHECK(format_prefix(*parse_prefix("::/0")) == "::/0");
  CHECK(format_prefix(*parse_prefix("10.0.0.1/32")) == "10.0.0.1/32");
  for (const std::string text :
       {"", "10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "fd00::/129", "10.0.0.0/8/8", "10.0.0.0/-1",
        "10.0.0.0/ 8", "db/8", "fe80::%eth0/64", "10.0.0.0/8x"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_prefix(text, true));
  }
}

TEST_CASE("prefix_contains compares the prefix bits of one family") {
  const ip_prefix v4 = *parse_prefix("10.96.0.0/12");
  CHECK(prefix_contains(v4, test::ip("10.96.0.1")));
  CHECK(prefix_contains(v4, test::ip("10.111.255.255")));
  CHECK_FALSE(prefix_contains(v4, test::ip("10.112.0.0")));
  CHECK_FALSE(prefix_contains(v4, test::ip("::a60:1")));
  const ip_prefix v6 = *parse_prefix("fd00:10:96::/108");
  CHECK(prefix_contains(v6, test::ip("fd00:10:96::f:ffff")));
  CHECK_FALSE(prefix_contains(v6, test::ip("fd00:10:96::10:0")));
  CHECK(prefix_contains(*parse_prefix("0.0.0.0/0"), test::ip("192.0.2.1")));
  CHECK_FALSE(prefix_contains(*parse_prefix("0.0.0.0/0"), test::ip("::1")));
  CHECK(prefix_contains(*parse_prefix("192.0.2.7/32"), test::ip("192.0.2.7")));
  CHECK_FALSE(prefix_contains(*parse_prefix("192.0.2.7/32"), test::ip("192.0.2.6")));
}

TEST_CASE("node::zone reads topology.kubernetes.io/zone") {
  node n;
  CHECK(n.zone() == "");
  n.labels["topology.kubernetes.io/zone"] = "eu-west-1a";
  CHECK(n.zone() == "eu-west-1a");
}


TEST_CASE("parse_rfc3339: the forms Kubernetes writes, and nothing else") {
  using namespace std::chrono;
  const auto at = [](int y, unsigned mo, unsigned d, int h, int mi, int s) {
    return sys_days(year(y) / month(mo) / day(d)) + hours(h) + minutes(mi) + seconds(s);
  };
  CHECK(parse_rfc3339("2025-03-04T10:25:41Z") == at(2025, 3, 4, 10, 25, 41));
  CHECK(parse_rfc3339("2025-03-04T10:25:41.5Z") == at(2025, 3, 4, 10, 25, 41) + milliseconds(500));
  CHECK(parse_rfc3339("2025-03-04T10:25:41.123456789Z") ==
        at(2025, 3, 4, 10, 25, 41) + nanoseconds(123456789));
  CHECK(parse_rfc3339("2025-03-04T12:25:41+02:00") == at(2025, 3, 4, 10, 25, 41));
  CHECK(parse_rfc3339("2025-03-04T08:25:41-02:00") == at(2025, 3, 4, 10, 25, 41));
  CHECK(parse_rfc3339("2024-02-29t00:00:00z") == at(2024, 2, 29, 0, 0, 0));
  for (const char* bad : {"", "2025-03-04", "2025-03-04T10:25:41", "2025-02-30T00:00:00Z",
                          "2025-13-01T00:00:00Z", "2025-03-04T10:25:41.Z", "2025-03-04 10:25:41Z",
                          "2025-03-04T10:25:41Zjunk", "2025-03-04T10:25:41+0200"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

}  // namespace sluice
