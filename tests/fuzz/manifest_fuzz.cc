// decode_manifest(): a manifest file (YAML or JSON, several documents, Lists) as the
// standalone source reads it (agent/sources/manifest.h).
//
// Input: the file's text.
//
// Properties, beyond "no crash, no sanitizer report, no exception":
// - every rejected object or file has exactly one error line and every error is counted as
//   rejected (errors.size() == rejected): nothing is dropped silently;
// - `loaded` is the number of objects kept;
// - every error names the file and is one line (it goes to the log as is);
// - decoding is deterministic.
#include "agent/sources/manifest.h"

#include "tests/fuzz/fuzz_support.h"

using namespace sluice;
using namespace sluice::fuzz;

namespace {

constexpr std::string_view source_name = "fuzz/in.yaml";

bool same(const decode_result& a, const decode_result& b) {
  return a.objects == b.objects && a.nodes == b.nodes && a.errors == b.errors &&
         a.loaded == b.loaded && a.ignored == b.ignored && a.rejected == b.rejected;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = as_text(data, size);
  const decode_result r = decode_manifest(text, source_name);

  FUZZ_ASSERT(r.errors.size() == r.rejected, "{} errors but {} rejected", r.errors.size(),
              r.rejected);
  const std::size_t kept = r.objects.services.size() + r.objects.endpoint_slices.size() +
                           r.objects.pods.size() + r.objects.legacy_endpoints.size() +
                           r.nodes.size();
  FUZZ_ASSERT(r.loaded == kept, "loaded {} but {} objects kept", r.loaded, kept);
  for (const std::string& e : r.errors) {
    FUZZ_ASSERT(e.starts_with(fmt::format("{}:", source_name)), "error without the file: {}", e);
    FUZZ_ASSERT(one_line(e), "error is not one line: {}", e);
  }

  const decode_result again = decode_manifest(text, source_name);
  FUZZ_ASSERT(same(r, again), "not deterministic");
  return 0;
}
