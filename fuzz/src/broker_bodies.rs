//! The broker's fuzz targets' bodies, shared by the fuzz targets
//! (`fuzz_targets/access_token.rs`, `fuzz_targets/csv_import.rs`) and by
//! `broker/tests/fuzz_corpus.rs`, which runs them over the committed seeds
//! (`fuzz/seeds/<target>/`) on stable in every `cargo test`. They use
//! `lanyard_broker`, so they live apart from `bodies.rs`, which the proto
//! crate's tests include too. Each body returns what the corpus test checks;
//! the fuzz targets ignore it.
#![allow(dead_code)] // each fuzz target uses one body

use std::sync::OnceLock;

use data_encoding::BASE64URL_NOPAD;
use lanyard_broker::api::laptops::{parse_laptop, CSV_COLUMNS, CSV_OPTIONAL};
use lanyard_broker::auth::tokens::{Confirmation, TokenKeys, AUDIENCE, ISSUER, LEEWAY_SECS};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

/// The time (seconds since the epoch) tokens are verified at.
pub const TOKEN_NOW: i64 = 1_800_000_000;
/// The certificate fingerprint of the device presenting the token.
pub const TOKEN_DEVICE: [u8; 32] = [1; 32];
/// The Ed25519 seed of the broker's token key here; fixed, so that the
/// committed tokens keep verifying.
const TOKEN_KEY_SEED: [u8; 32] = [0x4c; 32];

/// The broker's token keys from [`TOKEN_KEY_SEED`], as an Ed25519 PKCS#8 v2
/// document (version 1, the algorithm, the seed, then the public key).
pub fn token_pkcs8() -> Vec<u8> {
    let pair = Ed25519KeyPair::from_seed_unchecked(&TOKEN_KEY_SEED).expect("a 32-byte seed");
    let mut der = vec![
        0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&TOKEN_KEY_SEED);
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
    der.extend_from_slice(pair.public_key().as_ref());
    der
}

/// The broker's token keys, made once.
pub fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::from_pkcs8(&token_pkcs8()).expect("the fixed key parses"))
}

/// An access token, as arbitrary bytes, through the broker's verification
/// (as a device's hello presents it): refused or accepted, never a panic;
/// and what is accepted carries a good Ed25519 signature by the broker's
/// key over its first two parts (checked here with ring alone), an EdDSA
/// header naming that key, and claims that hold at [`TOKEN_NOW`] for
/// [`TOKEN_DEVICE`]. Returns whether it was accepted.
pub fn access_token(data: &[u8]) -> bool {
    let Ok(token) = std::str::from_utf8(data) else {
        return false;
    };
    let keys = token_keys();
    let Ok(claims) = keys.verify(token, &TOKEN_DEVICE, TOKEN_NOW) else {
        return false;
    };

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "an accepted token has three parts");
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let signature = BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .expect("an accepted token's signature is base64url");
    UnparsedPublicKey::new(&ED25519, keys.public_key())
        .verify(signed.as_bytes(), &signature)
        .expect("an accepted token is signed by the broker's key");

    let header = BASE64URL_NOPAD
        .decode(parts[0].as_bytes())
        .expect("an accepted token's header is base64url");
    let header: serde_json::Value =
        serde_json::from_slice(&header).expect("an accepted token's header is JSON");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], keys.kid());

    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, AUDIENCE);
    assert_eq!(claims.cnf, Confirmation::for_fingerprint(&TOKEN_DEVICE));
    assert!(claims.nbf <= TOKEN_NOW + LEEWAY_SECS);
    assert!(claims.iat <= TOKEN_NOW + LEEWAY_SECS);
    assert!(claims.exp + LEEWAY_SECS > TOKEN_NOW);
    true
}

/// How an inventory CSV file fared: laptops that would be imported, and
/// problems named (a refused header counts as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOutcome {
    pub laptops: usize,
    pub problems: usize,
}

/// An uploaded inventory CSV file (`POST /api/v1/devices/import`), as
/// arbitrary bytes, through the import's reading and field checks: no
/// panic; a refused header is one problem at line 1; no more rows and
/// problems than the file has records; each on a line of the file, rows in
/// order; and every laptop that would be imported keeps the field
/// limits (asset tag 1-64 of A-Z a-z 0-9 - _ . /; serial and model 1-100
/// characters, notes up to 1,000, none with control characters; dates
/// YYYY-MM-DD; never added allocated).
pub fn csv_import(data: &[u8]) -> CsvOutcome {
    // The handler takes the body as a `String`: other bytes are refused
    // before the file is read.
    let Ok(text) = std::str::from_utf8(data) else {
        return CsvOutcome {
            laptops: 0,
            problems: 1,
        };
    };
    let (rows, problems) = match lanyard_broker::csv_import::read(text, &CSV_COLUMNS, &CSV_OPTIONAL)
    {
        Ok(read) => read,
        Err(refused) => {
            assert_eq!(refused.len(), 1, "a refused header is one problem");
            assert_eq!(refused[0].line, 1, "a refused header is at line 1");
            return CsvOutcome {
                laptops: 0,
                problems: 1,
            };
        }
    };
    // Lines as counted for the answer (by '\n'); records also end at a
    // lone '\r', so there may be more of them than lines.
    let lines = text.bytes().filter(|&b| b == b'\n').count() as u64 + 1;
    let ends = text.bytes().filter(|&b| matches!(b, b'\n' | b'\r')).count();
    assert!(rows.len() + problems.len() <= ends);
    for p in &problems {
        assert!(p.line <= lines, "problem at line {} of {lines}", p.line);
    }
    let mut last = 1;
    for row in &rows {
        assert!(row.line >= last, "row at line {} after {last}", row.line);
        assert!(row.line <= lines, "row at line {} of {lines}", row.line);
        last = row.line;
    }

    let mut laptops = 0;
    let mut problem_count = problems.len();
    for row in &rows {
        let parsed = parse_laptop(
            row.line,
            row.get("asset_tag"),
            row.get("serial"),
            row.get("model"),
            row.get("status"),
            row.get("notes"),
            row.get("purchase_date"),
            row.get("warranty_end"),
        );
        assert_eq!(parsed.line, row.line);
        let Some(laptop) = parsed.laptop else {
            assert!(!parsed.problems.is_empty(), "a refused row says why");
            problem_count += 1;
            continue;
        };
        assert!(parsed.problems.is_empty());
        let tag = laptop.asset_tag.as_str();
        assert!((1..=64).contains(&tag.len()), "asset tag {tag:?}");
        assert!(tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')));
        for (text, min, max) in [
            (&laptop.serial, 1, 100),
            (&laptop.model, 1, 100),
            (&laptop.notes, 0, 1000),
        ] {
            assert!((min..=max).contains(&text.chars().count()), "{text:?}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        for date in [&laptop.purchase_date, &laptop.warranty_end]
            .into_iter()
            .flatten()
        {
            assert_eq!(date.len(), 10, "{date:?}");
        }
        assert_ne!(laptop.status.as_str(), "allocated");
        laptops += 1;
    }
    CsvOutcome {
        laptops,
        problems: problem_count,
    }
}
