//! The controller's side of the fuzz harnesses (tests only): the shared driver
//! (`haven_proto::fuzzing`: the runner, the mutator, `HAVEN_FUZZ_CASES`) and the tokens worth
//! splicing into the controller's inputs.

pub use haven_proto::fuzzing::{bytes_from, run};

/// JSON tokens worth splicing into a JSON seed.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"\xe2\x80\xae\"",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"[[risk_decisions]]\n",
    b"\"\"\"",
    b"= ",
    b"1979-05-27T07:32:00Z",
    b"\"\xf0\x9f\x98\x80\"",
];
