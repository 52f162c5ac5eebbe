// decode_json(): the one decoder of Service / EndpointSlice / Endpoints / Pod / Node objects
// (agent/sources/decode.h), fed by both sources.
//
// Input: one byte choosing the default kind (fuzz_support.h: '-', 'S', 'E', 'N', 'P', 'L'),
// then the object's JSON text.
//
// Properties, beyond "no crash, no sanitizer report":
// - an error has a message of one line (it goes to the log and to the rejected counter's
//   reason) and the decoded objects have a name (and a namespace where the kind has one);
// - decoding is deterministic (the parser is reused from call to call);
// - field order does not matter: for valid JSON without repeated keys, the same text with the
//   keys of every mapping in reverse order gives the same object, or the same error naming the
//   same field (decode.h promises this: checks run after the last field in a fixed order).
#include "tests/fuzz/fuzz_support.h"

using namespace sluice;
using namespace sluice::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view kind = default_kind_of(data[0]);
  const std::string_view text = as_text(data + 1, size - 1);

  const decoded first = decode_json(text, kind);
  check_decoded(first);

  const decoded again = decode_json(text, kind);
  FUZZ_ASSERT(same(first, again), "not deterministic:\n  {}\n  {}", show(first), show(again));

  if (const std::optional<std::string> reversed = reversed_keys(text)) {
    const decoded other = decode_json(*reversed, kind);
    FUZZ_ASSERT(same(first, other),
                "field order changed the result:\n  as written: {}\n  reversed:   {}\n  "
                "reversed text: {}",
                show(first), show(other), *reversed);
  }
  return 0;
}
