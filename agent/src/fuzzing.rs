//! The agent's side of the fuzz harnesses (tests only): the shared driver
//! (`haven_proto::fuzzing`: the runner, the mutator, `HAVEN_FUZZ_CASES`) and the tokens worth
//! splicing into the agent's inputs.

pub use haven_proto::fuzzing::{bytes_from, run};

/// A sink that keeps nothing (a long run must not grow memory) but checks each record is of a
/// size the journal and the controller can take.
pub struct CheckingSink;

impl crate::report::BlockedSink for CheckingSink {
    fn blocked(&self, record: crate::report::Blocked) {
        assert!(
            record.subject.len() <= crate::screening::MAX_LINE,
            "a record's subject of {} bytes",
            record.subject.len()
        );
        assert!(
            record.detail.len() <= 2 * crate::screening::MAX_LINE,
            "a record's detail of {} bytes",
            record.detail.len()
        );
    }
}

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
    b"{\"op\":\"",
    b"\"\xf0\x9f\x98\x80\"",
];
