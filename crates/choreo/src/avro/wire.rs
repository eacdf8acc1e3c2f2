//! The Confluent wire format: a magic byte 0, the schema id as a big-endian u32, then the Avro
//! binary datum. Pure functions; no registry, no schema.

/// The byte every Confluent-framed value starts with.
pub const MAGIC: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// Why bytes are not a Confluent-framed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{len} byte(s) are too short for the 5-byte Confluent header")]
    TooShort { len: usize },
    #[error("the first byte is {found:#04x}, not the Confluent magic byte 0x00")]
    BadMagic { found: u8 },
}

/// The 5-byte header for `schema_id`.
pub fn header(schema_id: u32) -> [u8; HEADER_LEN] {
    let id = schema_id.to_be_bytes();
    [MAGIC, id[0], id[1], id[2], id[3]]
}

/// Splits a framed value into its schema id and Avro datum.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::TooShort { len: bytes.len() });
    }
    if bytes[0] != MAGIC {
        return Err(WireError::BadMagic { found: bytes[0] });
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_header_is_magic_then_big_endian_id() {
        assert_eq!(header(0x0102_0304), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn short_or_foreign_bytes_are_rejected() {
        assert_eq!(split(b"\0\0\0"), Err(WireError::TooShort { len: 3 }));
        assert_eq!(
            split(b"{\"json\":1}"),
            Err(WireError::BadMagic { found: b'{' })
        );
    }

    proptest! {
        #[test]
        fn split_undoes_header(id: u32, datum: Vec<u8>) {
            let mut framed = header(id).to_vec();
            framed.extend_from_slice(&datum);
            prop_assert_eq!(split(&framed), Ok((id, &datum[..])));
        }

        #[test]
        fn split_never_panics(bytes: Vec<u8>) {
            let _ = split(&bytes);
        }
    }
}
