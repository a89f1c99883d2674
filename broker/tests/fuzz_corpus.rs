//! The broker's fuzz targets' bodies (`fuzz/src/broker_bodies.rs`) over the
//! committed seeds (`fuzz/seeds/<target>/`), on the stable toolchain: the
//! code the fuzzers run is built and run by every `cargo test`, valid seeds
//! must still do what they are there for (a token verifies, a file's rows
//! become laptops) and bad ones must be refused. `cargo test -p
//! lanyard-broker --test fuzz_corpus -- --ignored` writes the seeds again.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

#[path = "../../fuzz/src/broker_bodies.rs"]
mod broker_bodies;

use std::path::{Path, PathBuf};

use broker_bodies::{token_keys, CsvOutcome, TOKEN_DEVICE, TOKEN_NOW};
use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lanyard_broker::auth::tokens::TokenKeys;
use serde_json::json;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Every seed of `target`, by file name, sorted; at least one.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, data)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `body` on every seed of `target`, naming the seed that panics.
fn run<T>(target: &str, body: fn(&[u8]) -> T) -> Vec<(String, Vec<u8>, T)> {
    seeds(target)
        .into_iter()
        .map(
            |(name, data)| match std::panic::catch_unwind(|| body(&data)) {
                Ok(out) => (name, data, out),
                Err(_) => panic!("fuzz/seeds/{target}/{name} panicked"),
            },
        )
        .collect()
}

#[test]
fn access_token_runs_over_its_corpus() {
    let results = run("access_token", broker_bodies::access_token);
    for (name, _, accepted) in &results {
        assert_eq!(*accepted, name.starts_with("valid-"), "{name}");
    }
    assert!(results.iter().any(|(n, _, _)| n.starts_with("valid-")));
    assert!(results.iter().any(|(n, _, _)| n.starts_with("bad-")));
}

#[test]
fn csv_import_runs_over_its_corpus() {
    let results = run("csv_import", broker_bodies::csv_import);
    for (name, data, outcome) in &results {
        if name.starts_with("valid-") {
            // Every non-blank line after the header is a laptop.
            let rows = String::from_utf8_lossy(data)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
                - 1;
            assert!(rows > 0, "{name}");
            let want = CsvOutcome {
                laptops: rows,
                problems: 0,
            };
            assert_eq!(*outcome, want, "{name}");
        } else {
            assert!(outcome.problems > 0, "{name}: {outcome:?}");
        }
    }
    assert!(results.iter().any(|(n, _, _)| n.starts_with("bad-")));
}

#[test]
fn the_fixed_token_key_is_the_one_that_signs() {
    // The seeds' key is built from a fixed seed; a fresh key's tokens are
    // not accepted by the body.
    let keys = token_keys();
    let token = keys.issue("j.smith", &TOKEN_DEVICE, TOKEN_NOW, 300);
    assert!(broker_bodies::access_token(token.as_bytes()));
    let other = TokenKeys::generate().issue("j.smith", &TOKEN_DEVICE, TOKEN_NOW, 300);
    assert!(!broker_bodies::access_token(other.as_bytes()));
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn b64(v: &serde_json::Value) -> String {
    BASE64URL_NOPAD.encode(v.to_string().as_bytes())
}

/// Writes the seed corpus again (run with `--ignored`).
#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing the seeds"]
fn write_seed_corpus() {
    // access_token: tokens as a device presents them.
    let keys = token_keys();
    let issue = |at: i64| keys.issue("j.smith", &TOKEN_DEVICE, at, 300);
    let good = issue(TOKEN_NOW - 10);
    let claims: serde_json::Value = serde_json::from_slice(
        &BASE64URL_NOPAD
            .decode(good.split('.').nth(1).unwrap().as_bytes())
            .unwrap(),
    )
    .unwrap();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims.clone();
        edit(&mut c);
        keys.sign(&c)
    };
    let payload = good.split('.').nth(1).unwrap();
    let (signed, sig) = good.rsplit_once('.').unwrap();
    let mut flipped = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
    flipped[0] ^= 1;
    let attacker = TokenKeys::generate();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(keys.kid().into());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(keys.public_key()),
    )
    .unwrap();
    let attacker_signed = attacker.sign(&claims);
    let (_, attacker_rest) = attacker_signed.split_once('.').unwrap();
    let ed_header = |h: serde_json::Value| format!("{}.{attacker_rest}", b64(&h));
    let tokens: Vec<(&str, Vec<u8>)> = vec![
        ("valid-issued", good.clone().into_bytes()),
        (
            "valid-sign-in",
            keys.issue_for_sign_in("a.jones", &TOKEN_DEVICE, Some("f1"), TOKEN_NOW, 900)
                .into_bytes(),
        ),
        ("valid-clock-ahead", issue(TOKEN_NOW + 59).into_bytes()),
        ("valid-nearly-expired", issue(TOKEN_NOW - 359).into_bytes()),
        (
            "bad-alg-none",
            format!(
                "{}.{payload}.",
                b64(&json!({"alg": "none", "kid": keys.kid()}))
            )
            .into_bytes(),
        ),
        ("bad-hs256-with-public-key", hs256.into_bytes()),
        (
            "bad-signature",
            format!("{signed}.{}", BASE64URL_NOPAD.encode(&flipped)).into_bytes(),
        ),
        (
            "bad-other-key-same-kid",
            ed_header(json!({"alg": "EdDSA", "typ": "JWT", "kid": keys.kid()})).into_bytes(),
        ),
        (
            "bad-embedded-jwk",
            ed_header(json!({"alg": "EdDSA", "kid": keys.kid(),
                "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}))
            .into_bytes(),
        ),
        (
            "bad-unknown-kid",
            attacker
                .issue("j.smith", &TOKEN_DEVICE, TOKEN_NOW, 300)
                .into_bytes(),
        ),
        (
            "bad-no-kid",
            ed_header(json!({"alg": "EdDSA"})).into_bytes(),
        ),
        ("bad-expired", issue(TOKEN_NOW - 361).into_bytes()),
        ("bad-not-yet-valid", issue(TOKEN_NOW + 61).into_bytes()),
        (
            "bad-wrong-device",
            keys.issue("j.smith", &[2; 32], TOKEN_NOW, 300).into_bytes(),
        ),
        (
            "bad-wrong-audience",
            with(&|c| c["aud"] = json!("lanyard-admin")).into_bytes(),
        ),
        (
            "bad-wrong-issuer",
            with(&|c| c["iss"] = json!("someone-else")).into_bytes(),
        ),
        (
            "bad-no-nbf",
            with(&|c| {
                c.as_object_mut().unwrap().remove("nbf");
            })
            .into_bytes(),
        ),
        (
            "bad-cnf-not-an-object",
            with(&|c| c["cnf"] = json!("x")).into_bytes(),
        ),
        ("bad-four-parts", format!("{good}.AAAA").into_bytes()),
        (
            "bad-oversized",
            format!("{good}{}", " ".repeat(8192)).into_bytes(),
        ),
        ("bad-not-utf8", vec![0x65, 0x79, 0xff, 0x2e, 0x2e]),
        ("bad-empty", Vec::new()),
    ];
    for (name, token) in tokens {
        write("access_token", name, &token);
    }

    // csv_import: inventory files as uploaded.
    let long = "S".repeat(101);
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "valid-minimal",
            b"asset_tag,serial,model,status\nLT-0001,SN123,ThinkPad T14,in-stock\n".to_vec(),
        ),
        (
            "valid-every-column-reordered",
            "\u{feff}Model,Asset_Tag,serial,status,notes,purchase_date,warranty_end\r\n\
             \"Latitude 5440, 14\"\"\",LT-0002,SN-9,in-repair,\"screen, cracked\",2024-03-01,2027-03-01\r\n\
             \r\n\
             MacBook Air , LT/0003,C02X,,,,\r\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "valid-no-final-newline",
            b"asset_tag,serial,model,status,notes\nA1,S1,M1,lost,gone\nA2,S2,M2,retired,".to_vec(),
        ),
        (
            "bad-missing-column",
            b"asset_tag,serial,status\nLT-1,S,in-stock\n".to_vec(),
        ),
        (
            "bad-unknown-column",
            b"asset_tag,serial,model,status,owner\nLT-1,S,M,in-stock,j.smith\n".to_vec(),
        ),
        (
            "bad-short-and-long-rows",
            b"asset_tag,serial,model,status\nLT-1,S\nLT-2,S,M,in-stock,extra\n".to_vec(),
        ),
        (
            "bad-fields",
            b"asset_tag,serial,model,status,purchase_date\nLT 1,,M,broken,2024-13-01\n".to_vec(),
        ),
        (
            "bad-allocated",
            b"asset_tag,serial,model,status\nLT-1,S,M,allocated\n".to_vec(),
        ),
        (
            "bad-long-serial",
            format!("asset_tag,serial,model,status\nLT-1,{long},M,in-stock\n").into_bytes(),
        ),
        (
            "bad-control-character",
            b"asset_tag,serial,model,status,notes\nLT-1,S,M,in-stock,\"a\x07b\"\n".to_vec(),
        ),
        (
            "bad-not-utf8",
            b"asset_tag,serial,model,status\nLT-1,S\xff,M,in-stock\n".to_vec(),
        ),
        ("bad-empty", Vec::new()),
    ];
    for (name, file) in files {
        write("csv_import", name, &file);
    }
}
