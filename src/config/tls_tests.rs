use super::super::test_load as load;
use super::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::X509NameBuilder;

pub(crate) fn key() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
}

pub(crate) fn self_signed(cn: &str, serial: u32, key: &PKey<Private>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("tollgate-tlsconf-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn yaml(cert: &str, key: &str) -> String {
    format!("tollgate:\n  tls: {{ cert: \"{cert}\", key: \"{key}\" }}\n")
}

#[test]
fn a_chain_and_its_key_load() {
    let f = Files::new("ok");
    let (k, ik) = (key(), key());
    let leaf = self_signed("gw.example", 7, &k);
    let inter = self_signed("intermediate", 8, &ik);
    let mut chain = leaf.to_pem().unwrap();
    chain.extend(inter.to_pem().unwrap());
    let c = load(&yaml(&f.write("c.pem", &chain), &f.write("k.pem", &k.private_key_to_pem_pkcs8().unwrap()))).unwrap();
    let tls = c.tls.expect("tls configured");
    assert_eq!(tls.identity.chain.len(), 1);
    assert_eq!(tls.identity.leaf.serial_number().to_bn().unwrap(), BigNum::from_u32(7).unwrap());
    let d = tls.identity.describe();
    assert!(d.contains("CN=gw.example") && d.contains("serial 07"), "{d}");
    assert!(!tls.identity.expired());
    // No `tls`: plain HTTP.
    assert!(load("tollgate:\n  listen: 127.0.0.1:1\n").unwrap().tls.is_none());
}

#[test]
fn bad_files_are_refused_naming_the_key_and_the_file() {
    let f = Files::new("bad");
    let (k, other) = (key(), key());
    let cert = f.write("c.pem", &self_signed("gw", 1, &k).to_pem().unwrap());
    let key_pem = k.private_key_to_pem_pkcs8().unwrap();
    let good_key = f.write("k.pem", &key_pem);
    let wrong_key = f.write("other.pem", &other.private_key_to_pem_pkcs8().unwrap());
    let garbage = f.write("garbage.pem", b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    let empty = f.write("empty.pem", b"");
    let missing = f.dir.join("missing.pem").display().to_string();
    let cases = [
        (yaml(&missing, &good_key), "tollgate.tls.cert", missing.clone()),
        (yaml(&garbage, &good_key), "tollgate.tls.cert", garbage.clone()),
        (yaml(&empty, &good_key), "tollgate.tls.cert", empty.clone()),
        (yaml(&cert, &missing), "tollgate.tls.key", missing.clone()),
        (yaml(&cert, &garbage), "tollgate.tls.key", garbage.clone()),
        // A certificate in place of the key.
        (yaml(&cert, &cert), "tollgate.tls.key", cert.clone()),
        (yaml(&cert, &wrong_key), "tollgate.tls.key", wrong_key.clone()),
        (format!("tollgate:\n  tls: {{ cert: \"{cert}\" }}\n"), "tollgate.tls.key", String::new()),
        (format!("tollgate:\n  tls: {{ key: \"{good_key}\" }}\n"), "tollgate.tls.cert", String::new()),
        (format!("tollgate:\n  tls: {{ cert: '', key: \"{good_key}\" }}\n"), "tollgate.tls.cert", String::new()),
        (format!("tollgate:\n  tls: {{ cert: \"{cert}\", key: \"{good_key}\", ca: x }}\n"), "tollgate", String::new()),
    ];
    let key_text = String::from_utf8(key_pem).unwrap();
    let key_body: String = key_text.lines().nth(1).unwrap().to_string();
    for (y, k, file) in cases {
        let e = load(&y).unwrap_err();
        assert_eq!(e.key, k, "{y}: {e}");
        assert!(e.to_string().contains(&file), "names {file}: {e}");
        assert!(!e.to_string().contains(&key_body), "the key's bytes in an error: {e}");
    }
}

#[test]
fn debug_never_shows_the_key() {
    let f = Files::new("debug");
    let k = key();
    let key_pem = k.private_key_to_pem_pkcs8().unwrap();
    let c = load(&yaml(&f.write("c.pem", &self_signed("gw", 3, &k).to_pem().unwrap()), &f.write("k.pem", &key_pem))).unwrap();
    let dbg = format!("{c:?}");
    let body = String::from_utf8(key_pem).unwrap().lines().nth(1).unwrap().to_string();
    assert!(!dbg.contains(&body) && !dbg.contains("PRIVATE"), "{dbg}");
    assert!(dbg.contains("subject CN=gw"), "{dbg}");
}
