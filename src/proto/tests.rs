//! Byte-vector tests of the server rules and property tests of the timestamp arithmetic.
