//! Ente's own apps upload through museum unchanged: a small client per app that sends
//! exactly what /work/shared/ente-clients.md (§2-§5) says the web and mobile apps send,
//! and reads back exactly what they read.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use md5::{Digest, Md5};
use museum::config::BUCKET_IDS;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, bytes_of, md5_b64, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    the_web_app_uploads_a_small_file_with_checksums,
    the_web_app_uploads_a_large_file_in_parts_with_checksums,
    an_older_web_app_uploads_small_and_large_files_without_checksums,
    the_mobile_app_uploads_a_small_file_with_checksums,
    the_mobile_app_uploads_a_large_file_in_parts_with_checksums,
    an_older_mobile_app_uploads_small_and_large_files_without_checksums,
    a_repeated_report_answers_the_same_file_and_records_nothing_new,
    hex_checksums_are_accepted_and_the_upload_succeeds,
    a_report_that_is_not_json_sent_as_text_plain_gets_a_json_400,
    a_minimal_museum_report_with_application_json_still_works,
    unknown_query_parameters_are_ignored_on_every_upload_endpoint,
);

const WEB_PACKAGE: &str = "io.ente.photos.web";
const WEB_ORIGIN: &str = "http://localhost:3000";
const WEB_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36";
const MOBILE_PACKAGE: &str = "io.ente.photos";
const MOBILE_VERSION: &str = "1.3.58";
const MOBILE_USER_AGENT: &str = "ente/1.3.58 (Android 14; Pixel 8; shiba; arm64-v8a)";

/// The web app's encrypted stream chunk: 4 MiB of plaintext and 17 B of secretstream.
const WEB_CHUNK: usize = 4 * 1024 * 1024 + 17;
/// The web app's full part: 5 encrypted chunks, 20,971,605 B.
const WEB_PART: usize = 5 * WEB_CHUNK;
/// The mobile app's part: 20 MiB of the encrypted file.
const MOBILE_PART: usize = 20 * 1024 * 1024;

/// A realistic encrypted thumbnail and small file.
const THUMB_SIZE: usize = 31_017;
const SMALL_SIZE: usize = 1_234_584;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Web,
    Mobile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `GET /files/upload-urls`, `GET /files/multipart-upload-urls`, no checksums.
    V1,
    /// `POST /files/upload-url`, `POST /files/multipart-upload-url`, checksums.
    V2,
}

/// How a checksum is written in the upload-URL requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Md5Form {
    Base64,
    Hex,
}

/// One multipart upload's URLs.
struct Multipart {
    key: String,
    part_urls: Vec<String>,
    complete_url: String,
}

/// A status and a parsed JSON body.
struct Reply {
    status: u16,
    body: Value,
}

/// The encrypted bytes the app uploads for one file.
struct Upload {
    file: Vec<u8>,
    thumb: Vec<u8>,
}

impl Upload {
    fn new(file_size: usize, seed: u8) -> Self {
        Self {
            file: bytes_of(file_size, seed),
            thumb: bytes_of(THUMB_SIZE, seed.wrapping_add(100)),
        }
    }
}

/// Where the app put the file and thumbnail.
struct Keys {
    file: String,
    thumb: String,
}

/// The Ente File fields of a `POST /files` body (§5), random as the apps' ciphertexts are.
struct EnteFile {
    collection_id: i64,
    encrypted_key: String,
    key_decryption_nonce: String,
    file_header: String,
    thumb_header: String,
    metadata_data: String,
    metadata_header: String,
    pub_magic_count: i64,
    pub_magic_data: String,
    pub_magic_header: String,
}

fn random_b64(len: usize) -> String {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn now_us() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

impl EnteFile {
    fn random() -> Self {
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).unwrap();
        Self {
            collection_id: 1_000 + i64::from(u32::from_le_bytes(id) % 1_000_000),
            encrypted_key: random_b64(48),
            key_decryption_nonce: random_b64(24),
            file_header: random_b64(24),
            thumb_header: random_b64(24),
            metadata_data: random_b64(211),
            metadata_header: random_b64(24),
            pub_magic_count: 2,
            pub_magic_data: random_b64(57),
            pub_magic_header: random_b64(24),
        }
    }

    /// The compact JSON the app sends: web puts `decryptionHeader` before `objectKey`,
    /// mobile the other way round.
    fn body(&self, kind: Kind, keys: &Keys, upload: &Upload) -> String {
        let attributes = |header: &str, key: &str, size: usize| match kind {
            Kind::Web => {
                format!(r#"{{"decryptionHeader":"{header}","objectKey":"{key}","size":{size}}}"#)
            }
            Kind::Mobile => {
                format!(r#"{{"objectKey":"{key}","decryptionHeader":"{header}","size":{size}}}"#)
            }
        };
        format!(
            concat!(
                r#"{{"collectionID":{},"encryptedKey":"{}","keyDecryptionNonce":"{}","#,
                r#""file":{},"thumbnail":{},"#,
                r#""metadata":{{"encryptedData":"{}","decryptionHeader":"{}"}},"#,
                r#""pubMagicMetadata":{{"version":1,"count":{},"data":"{}","header":"{}"}}}}"#
            ),
            self.collection_id,
            self.encrypted_key,
            self.key_decryption_nonce,
            attributes(&self.file_header, &keys.file, upload.file.len()),
            attributes(&self.thumb_header, &keys.thumb, upload.thumb.len()),
            self.metadata_data,
            self.metadata_header,
            self.pub_magic_count,
            self.pub_magic_data,
            self.pub_magic_header,
        )
    }

    /// Checks every field the apps read from the answer (§5 "Answer"): the web app's zod
    /// `RemoteEnteFile`, which then decrypts the key and metadata it gets back, and the
    /// mobile app's top-level `id`, `updationTime` and `ownerID`.
    fn check_answer(
        &self,
        answer: &Value,
        owner: i64,
        keys: &Keys,
        upload: &Upload,
        sent_between_us: (i64, i64),
    ) {
        let a = answer;
        for field in ["id", "collectionID", "ownerID", "updationTime"] {
            assert!(a[field].is_i64(), "{field} must be a number: {a}");
        }
        assert_eq!(a["ownerID"], owner, "ownerID is the token's user: {a}");
        assert_eq!(a["collectionID"], self.collection_id, "{a}");
        let t = a["updationTime"].as_i64().unwrap();
        let (before, after) = sent_between_us;
        assert!(
            before - 5_000_000 <= t && t <= after + 5_000_000,
            "updationTime {t} is not microseconds of the report (sent between {before} and {after})"
        );
        assert_eq!(a["encryptedKey"], self.encrypted_key.as_str(), "{a}");
        assert_eq!(
            a["keyDecryptionNonce"],
            self.key_decryption_nonce.as_str(),
            "{a}"
        );
        assert_eq!(
            a["file"]["decryptionHeader"],
            self.file_header.as_str(),
            "{a}"
        );
        assert_eq!(
            a["thumbnail"]["decryptionHeader"],
            self.thumb_header.as_str(),
            "{a}"
        );
        assert_eq!(
            a["metadata"]["decryptionHeader"],
            self.metadata_header.as_str(),
            "{a}"
        );
        assert_eq!(
            a["metadata"]["encryptedData"],
            self.metadata_data.as_str(),
            "{a}"
        );
        assert_eq!(
            a["pubMagicMetadata"],
            json!({"version": 1, "count": self.pub_magic_count,
                   "data": self.pub_magic_data, "header": self.pub_magic_header}),
            "{a}"
        );
        assert_eq!(a["info"]["fileSize"], upload.file.len(), "{a}");
        assert_eq!(a["info"]["thumbSize"], upload.thumb.len(), "{a}");
        assert_eq!(a["file"]["objectKey"], keys.file.as_str(), "{a}");
        assert_eq!(a["file"]["size"], upload.file.len(), "{a}");
        assert_eq!(a["thumbnail"]["objectKey"], keys.thumb.as_str(), "{a}");
        assert_eq!(a["thumbnail"]["size"], upload.thumb.len(), "{a}");
        assert!(
            a.get("isDeleted").is_none_or(|d| *d == json!(false)),
            "a new file is not deleted: {a}"
        );
    }
}

/// One Ente app, talking to museum and to the bucket as §2-§4 describe.
struct Ente<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    token: String,
    user: i64,
    kind: Kind,
    protocol: Protocol,
    md5_form: Md5Form,
    /// The v1 URLs fetched ahead (web pops from the back, mobile takes from the front).
    prefetched: Vec<(String, String)>,
}

impl<'a> Ente<'a> {
    async fn new(app: &'a TestApp, user: i64, kind: Kind, protocol: Protocol) -> Self {
        Self {
            app,
            http: reqwest::Client::new(),
            token: app.token_for(user).await,
            user,
            kind,
            protocol,
            md5_form: Md5Form::Base64,
            prefetched: Vec::new(),
        }
    }

    /// `?ts=<ms>` on the web app's upload-URL requests (§2), with `sep` being `?` or `&`.
    fn ts(&self, sep: char) -> String {
        match self.kind {
            Kind::Web => format!("{sep}ts={}", now_ms()),
            Kind::Mobile => String::new(),
        }
    }

    fn request_id() -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        format!("droid_{}", &id[..22])
    }

    /// A museum request with the app's headers (§2).
    fn museum(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path_and_query}", self.app.address))
            .header("X-Auth-Token", &self.token);
        match self.kind {
            Kind::Web => req
                .header("X-Client-Package", WEB_PACKAGE)
                .header("Origin", WEB_ORIGIN)
                .header("User-Agent", WEB_USER_AGENT)
                .header("Accept", "*/*"),
            Kind::Mobile => req
                .header("User-Agent", MOBILE_USER_AGENT)
                .header("X-Client-Version", MOBILE_VERSION)
                .header("X-Client-Package", MOBILE_PACKAGE)
                .header("x-request-id", Self::request_id())
                .header("Accept-Encoding", "gzip"),
        }
    }

    /// A bucket request: the base headers, never the token (§2).
    fn bucket(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match self.kind {
            Kind::Web => req
                .header("X-Client-Package", WEB_PACKAGE)
                .header("Origin", WEB_ORIGIN)
                .header("User-Agent", WEB_USER_AGENT)
                .header("Accept", "*/*"),
            Kind::Mobile => req
                .header("User-Agent", MOBILE_USER_AGENT)
                .header("X-Client-Version", MOBILE_VERSION)
                .header("X-Client-Package", MOBILE_PACKAGE)
                .header("Accept-Encoding", "gzip"),
        }
    }

    async fn reply(what: &str, response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let gzipped = response
            .headers()
            .get("content-encoding")
            .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"gzip"));
        assert!(
            !gzipped,
            "{what}: gzipped answer; this test client cannot decode it (the apps can)"
        );
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: body is not JSON (status {status}): {text:?}"));
        Reply { status, body }
    }

    async fn call(&self, what: &str, req: reqwest::RequestBuilder) -> Reply {
        Self::reply(what, req.send().await.unwrap()).await
    }

    /// A JSON POST to museum, with the explicit `Content-Type: application/json` both
    /// apps send on the upload-URL endpoints.
    async fn post_json(&self, path: &str, body: String) -> Reply {
        let req = self
            .museum(reqwest::Method::POST, path)
            .header("Content-Type", "application/json")
            .body(body);
        self.call(&format!("POST {path}"), req).await
    }

    fn md5(&self, bytes: &[u8]) -> String {
        match self.md5_form {
            Md5Form::Base64 => md5_b64(bytes),
            Md5Form::Hex => md5_hex(bytes),
        }
    }

    /// `GET /files/upload-eligibility`, which the mobile app calls before each batch:
    /// anything but a 200 (or a 404, for the fallback) fails its sync.
    async fn check_eligibility(&self) {
        let r = self
            .call(
                "GET /files/upload-eligibility",
                self.museum(reqwest::Method::GET, "/files/upload-eligibility"),
            )
            .await;
        assert_eq!(r.status, 200, "upload-eligibility: {}", r.body);
    }

    /// v2: `POST /files/upload-url`, answered bare `{objectKey, url}`.
    async fn upload_url(&self, bytes: &[u8]) -> (String, String) {
        let path = format!("/files/upload-url{}", self.ts('?'));
        let body = format!(
            r#"{{"contentLength":{},"contentMD5":"{}"}}"#,
            bytes.len(),
            self.md5(bytes)
        );
        let r = self.post_json(&path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        (
            r.body["objectKey"]
                .as_str()
                .unwrap_or_else(|| panic!("bare objectKey expected: {}", r.body))
                .to_owned(),
            r.body["url"]
                .as_str()
                .unwrap_or_else(|| panic!("bare url expected: {}", r.body))
                .to_owned(),
        )
    }

    /// v1: `GET /files/upload-urls?count=N`, answered `{"urls":[…]}`.
    async fn prefetch_upload_urls(&mut self, count: usize) {
        let path = format!("/files/upload-urls?count={count}{}", self.ts('&'));
        let r = self
            .call(
                &format!("GET {path}"),
                self.museum(reqwest::Method::GET, &path),
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let urls = r.body["urls"].as_array().unwrap();
        assert_eq!(urls.len(), count, "{}", r.body);
        for u in urls {
            self.prefetched.push((
                u["objectKey"].as_str().unwrap().to_owned(),
                u["url"].as_str().unwrap().to_owned(),
            ));
        }
    }

    /// The next prefetched v1 URL: web pops from the end, mobile removes the first.
    fn take_prefetched(&mut self) -> (String, String) {
        assert!(!self.prefetched.is_empty(), "no prefetched URL left");
        let (key, url) = match self.kind {
            Kind::Web => self.prefetched.pop().unwrap(),
            Kind::Mobile => self.prefetched.remove(0),
        };
        // The web app throws if it is handed the same URL twice.
        assert!(
            self.prefetched.iter().all(|(k, u)| *k != key && *u != url),
            "the same URL was issued twice"
        );
        (key, url)
    }

    /// Parses multipart URLs: web v2 reads them bare, web v1 wrapped in `urls`, and
    /// mobile accepts either.
    fn parse_multipart(&self, body: &Value, wrapped_for_web: bool) -> Multipart {
        let m = match self.kind {
            Kind::Web if wrapped_for_web => &body["urls"],
            Kind::Web => body,
            Kind::Mobile if body.get("urls").is_some() => &body["urls"],
            Kind::Mobile => body,
        };
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("multipart URLs of the wrong shape: {body}"))
                .to_owned()
        };
        Multipart {
            key: text(&m["objectKey"]),
            part_urls: m["partURLs"]
                .as_array()
                .unwrap_or_else(|| panic!("no partURLs array: {body}"))
                .iter()
                .map(text)
                .collect(),
            complete_url: text(&m["completeURL"]),
        }
    }

    /// v2: `POST /files/multipart-upload-url`.
    async fn multipart_url(&self, parts: &[&[u8]], part_length: usize) -> Multipart {
        let path = format!("/files/multipart-upload-url{}", self.ts('?'));
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let md5s: Vec<String> = parts.iter().map(|p| self.md5(p)).collect();
        let body = format!(
            r#"{{"contentLength":{total},"partLength":{part_length},"partMd5s":{}}}"#,
            serde_json::to_string(&md5s).unwrap()
        );
        let r = self.post_json(&path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let m = self.parse_multipart(&r.body, false);
        if self.kind == Kind::Mobile {
            // The mobile app refuses any other count (service/multipart.dart:92-125).
            assert_eq!(
                m.part_urls.len(),
                total.div_ceil(part_length),
                "partURLs.length must be ceil(contentLength/partLength): {}",
                r.body
            );
        }
        m
    }

    /// v1: `GET /files/multipart-upload-urls?count=P`.
    async fn multipart_urls(&self, count: usize) -> Multipart {
        let path = format!("/files/multipart-upload-urls?count={count}{}", self.ts('&'));
        let r = self
            .call(
                &format!("GET {path}"),
                self.museum(reqwest::Method::GET, &path),
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let m = self.parse_multipart(&r.body, true);
        // The web app throws on fewer URLs than parts; museum issues exactly `count`.
        assert_eq!(m.part_urls.len(), count, "{}", r.body);
        m
    }

    /// A single PUT: web sends no Content-Type (a `Uint8Array`), mobile a stream with its
    /// `Content-Length`; both add `Content-MD5` (base64) in v2. Any 2xx is success.
    async fn put(&self, url: &str, bytes: &[u8]) {
        let mut req = self.bucket(reqwest::Method::PUT, url);
        if self.kind == Kind::Mobile {
            req = req.header("Content-Length", bytes.len());
        }
        if self.protocol == Protocol::V2 {
            req = req.header("Content-MD5", md5_b64(bytes));
        }
        let r = req.body(bytes.to_vec()).send().await.unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT to the bucket: {status} {}",
            r.text().await.unwrap()
        );
    }

    /// One part PUT; returns its ETag header as the app reads it.
    async fn put_part(&self, url: &str, bytes: &[u8]) -> String {
        let mut req = self.bucket(reqwest::Method::PUT, url);
        if self.kind == Kind::Mobile {
            req = req
                .header("Content-Length", bytes.len())
                .header("Content-Type", "application/octet-stream");
        }
        if self.protocol == Protocol::V2 {
            req = req.header("Content-MD5", md5_b64(bytes));
        }
        let r = req.body(bytes.to_vec()).send().await.unwrap();
        let status = r.status();
        let etag = r
            .headers()
            .get("etag")
            .map(|e| e.to_str().unwrap().to_owned());
        assert!(
            status.is_success(),
            "part PUT: {status} {}",
            r.text().await.unwrap()
        );
        let etag = etag.expect("a part PUT without an ETag: the app reports the file blocked");
        assert!(!etag.is_empty(), "an empty ETag: ETAG_MISSING");
        etag
    }

    /// The hand-built `CompleteMultipartUpload` POST of §4.
    async fn complete(&self, url: &str, etags: &[String]) {
        let xml = match self.kind {
            Kind::Web => {
                let parts: Vec<String> = etags
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        format!(
                            "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                            i + 1
                        )
                    })
                    .collect();
                format!(
                    "<CompleteMultipartUpload>\n{}\n</CompleteMultipartUpload>",
                    parts.join("\n")
                )
            }
            Kind::Mobile => {
                let mut xml = String::from("<CompleteMultipartUpload>\n");
                for (i, e) in etags.iter().enumerate() {
                    xml.push_str(&format!(
                        "    <Part>\n        <PartNumber>{}</PartNumber>\n        \
                         <ETag>{e}</ETag>\n    </Part>\n",
                        i + 1
                    ));
                }
                xml.push_str("</CompleteMultipartUpload>");
                xml.replace("&quot;", "").replace('"', "")
            }
        };
        if self.kind == Kind::Mobile {
            assert!(!xml.contains('"'), "mobile ETags go unquoted");
        } else {
            assert!(xml.contains("<ETag>\""), "web ETags go verbatim, quoted");
        }
        let r = self
            .bucket(reqwest::Method::POST, url)
            .header("Content-Type", "text/xml")
            .body(xml)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "complete: {status} {}",
            r.text().await.unwrap()
        );
    }

    /// Uploads parts one at a time, in order, and completes the upload.
    async fn upload_parts(&self, m: &Multipart, parts: &[&[u8]]) {
        let mut etags = Vec::new();
        for (url, part) in m.part_urls.iter().zip(parts) {
            etags.push(self.put_part(url, part).await);
        }
        self.complete(&m.complete_url, &etags).await;
    }

    /// Whether the app would upload `len` encrypted bytes in parts, and the parts.
    fn split<'b>(&self, bytes: &'b [u8]) -> Option<(Vec<&'b [u8]>, usize)> {
        match self.kind {
            // 5 or more encrypted chunks (plaintext over 16 MiB), 5 chunks a part.
            Kind::Web => {
                (bytes.len() > 4 * WEB_CHUNK).then(|| (bytes.chunks(WEB_PART).collect(), WEB_PART))
            }
            Kind::Mobile => (bytes.len().div_ceil(MOBILE_PART) > 1)
                .then(|| (bytes.chunks(MOBILE_PART).collect(), MOBILE_PART)),
        }
    }

    /// The file's multipart upload (v1 or v2); returns its key.
    async fn upload_multipart(&self, parts: &[&[u8]], part_length: usize) -> String {
        let m = match self.protocol {
            // Web sends the first part's length; mobile its constant 20 MiB.
            Protocol::V2 => self.multipart_url(parts, part_length).await,
            Protocol::V1 => self.multipart_urls(parts.len()).await,
        };
        self.upload_parts(&m, parts).await;
        m.key
    }

    /// One single-part object (v1 from the prefetched URLs, v2 with a fresh URL).
    async fn upload_single(&mut self, bytes: &[u8]) -> String {
        let (key, url) = match self.protocol {
            Protocol::V2 => self.upload_url(bytes).await,
            Protocol::V1 => self.take_prefetched(),
        };
        self.put(&url, bytes).await;
        key
    }

    /// Uploads one file and its thumbnail in the app's order (§3).
    async fn upload(&mut self, upload: &Upload) -> Keys {
        if self.kind == Kind::Mobile && self.protocol == Protocol::V2 {
            self.check_eligibility().await;
        }
        if self.protocol == Protocol::V1 && self.prefetched.is_empty() {
            // Web: setFileCount(1) prefetches min(50, 2n); mobile: min(42, 2n).
            self.prefetch_upload_urls(2).await;
        }
        match (self.split(&upload.file), self.kind) {
            (Some((parts, part_length)), _) => {
                // Multipart: the file, then the thumbnail (both apps).
                let file = self.upload_multipart(&parts, part_length).await;
                let thumb = self.upload_single(&upload.thumb).await;
                Keys { file, thumb }
            }
            (None, Kind::Web) => {
                let file = self.upload_single(&upload.file).await;
                let thumb = self.upload_single(&upload.thumb).await;
                Keys { file, thumb }
            }
            (None, Kind::Mobile) => {
                // Mobile single part: the thumbnail first.
                let thumb = self.upload_single(&upload.thumb).await;
                let file = self.upload_single(&upload.file).await;
                Keys { file, thumb }
            }
        }
    }

    /// `POST /files` as the app sends it (§5): web lets fetch label the string
    /// `text/plain;charset=UTF-8`, mobile sends `application/json`.
    async fn report_raw(&self, path: &str, body: String) -> Reply {
        let content_type = match self.kind {
            Kind::Web => "text/plain;charset=UTF-8",
            Kind::Mobile => "application/json",
        };
        let req = self
            .museum(reqwest::Method::POST, path)
            .header("Content-Type", content_type)
            .body(body);
        self.call(&format!("POST {path}"), req).await
    }

    /// Reports `keys` with a full Ente File body and checks the answer; returns it.
    async fn report(&self, file: &EnteFile, keys: &Keys, upload: &Upload) -> Value {
        self.report_at("/files", file, keys, upload).await
    }

    async fn report_at(&self, path: &str, file: &EnteFile, keys: &Keys, upload: &Upload) -> Value {
        let before = now_us();
        let r = self
            .report_raw(path, file.body(self.kind, keys, upload))
            .await;
        let after = now_us();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        file.check_answer(&r.body, self.user, keys, upload, (before, after));
        r.body
    }
}

/// After replication, every bucket holds exactly the uploaded bytes.
async fn assert_in_every_bucket(app: &TestApp, keys: &Keys, upload: &Upload) {
    app.drain().await;
    for id in BUCKET_IDS {
        for (what, key, bytes) in [
            ("file", &keys.file, &upload.file),
            ("thumbnail", &keys.thumb, &upload.thumb),
        ] {
            let stored = app.server(id).object(key);
            assert!(
                stored.as_deref() == Some(bytes.as_slice()),
                "{id} holds {} bytes of the {what} ({} uploaded), or other bytes",
                stored.map_or(0, |s| s.len()),
                bytes.len()
            );
        }
    }
}

/// One whole upload with `client`: upload, report, check the answer and the buckets.
async fn upload_and_report(app: &TestApp, client: &mut Ente<'_>, upload: &Upload) -> Value {
    let keys = client.upload(upload).await;
    let file = EnteFile::random();
    let answer = client.report(&file, &keys, upload).await;
    assert_in_every_bucket(app, &keys, upload).await;
    answer
}

async fn the_web_app_uploads_a_small_file_with_checksums(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut web = Ente::new(&app, 4101, Kind::Web, Protocol::V2).await;
    upload_and_report(&app, &mut web, &Upload::new(SMALL_SIZE, 1)).await;
}

async fn the_web_app_uploads_a_large_file_in_parts_with_checksums(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut web = Ente::new(&app, 4102, Kind::Web, Protocol::V2).await;
    // One full part of 5 encrypted chunks and a last part of one short chunk.
    let upload = Upload::new(WEB_PART + 1_000_017, 2);
    upload_and_report(&app, &mut web, &upload).await;
}

async fn an_older_web_app_uploads_small_and_large_files_without_checksums(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut web = Ente::new(&app, 4103, Kind::Web, Protocol::V1).await;
    upload_and_report(&app, &mut web, &Upload::new(SMALL_SIZE, 3)).await;
    let mut web = Ente::new(&app, 4103, Kind::Web, Protocol::V1).await;
    upload_and_report(&app, &mut web, &Upload::new(WEB_PART + 2_097_169, 4)).await;
}

async fn the_mobile_app_uploads_a_small_file_with_checksums(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut mobile = Ente::new(&app, 4201, Kind::Mobile, Protocol::V2).await;
    upload_and_report(&app, &mut mobile, &Upload::new(SMALL_SIZE, 5)).await;
}

async fn the_mobile_app_uploads_a_large_file_in_parts_with_checksums(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut mobile = Ente::new(&app, 4202, Kind::Mobile, Protocol::V2).await;
    let upload = Upload::new(MOBILE_PART + 777_777, 6);
    upload_and_report(&app, &mut mobile, &upload).await;
}

async fn an_older_mobile_app_uploads_small_and_large_files_without_checksums(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut mobile = Ente::new(&app, 4203, Kind::Mobile, Protocol::V1).await;
    upload_and_report(&app, &mut mobile, &Upload::new(SMALL_SIZE, 7)).await;
    let mut mobile = Ente::new(&app, 4203, Kind::Mobile, Protocol::V1).await;
    upload_and_report(&app, &mut mobile, &Upload::new(MOBILE_PART + 4_096, 8)).await;
}

/// Row counts of every table but the migrations' bookkeeping.
async fn row_counts(app: &TestApp) -> Vec<(String, i64)> {
    let list = match app.state.db.engine() {
        museum::db::Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name"
        }
        museum::db::Engine::Postgres => {
            "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename NOT LIKE '_sqlx%' ORDER BY tablename"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(list)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{table}\""
        )))
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        counts.push((table, n));
    }
    counts
}

async fn a_repeated_report_answers_the_same_file_and_records_nothing_new(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut web = Ente::new(&app, 4301, Kind::Web, Protocol::V2).await;
    let upload = Upload::new(SMALL_SIZE, 9);
    let keys = web.upload(&upload).await;
    let file = EnteFile::random();
    let first = web.report(&file, &keys, &upload).await;
    let before = row_counts(&app).await;

    // The web app retries after 2, 5 and 10 s when an answer is lost.
    let again = web
        .report_raw("/files", file.body(Kind::Web, &keys, &upload))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.body["id"], first["id"],
        "the same File: {}",
        again.body
    );
    assert_eq!(
        again.body["updationTime"], first["updationTime"],
        "{}",
        again.body
    );
    let t = first["updationTime"].as_i64().unwrap();
    file.check_answer(&again.body, 4301, &keys, &upload, (t, t));
    assert_eq!(
        row_counts(&app).await,
        before,
        "the repeat recorded something"
    );

    assert_in_every_bucket(&app, &keys, &upload).await;
    let after_drain = web
        .report_raw("/files", file.body(Kind::Web, &keys, &upload))
        .await;
    assert_eq!(after_drain.status, 200, "{}", after_drain.body);
    assert_eq!(after_drain.body["id"], first["id"]);
    assert_eq!(after_drain.body["updationTime"], first["updationTime"]);
    assert!(
        app.drain().await.is_empty(),
        "a repeat after replication queues no copy"
    );
}

async fn hex_checksums_are_accepted_and_the_upload_succeeds(engine: Engine) {
    let app = spawn_app(engine).await;
    // Single part: a hex contentMD5 for both objects; the PUTs send base64 Content-MD5.
    let mut web = Ente::new(&app, 4401, Kind::Web, Protocol::V2).await;
    web.md5_form = Md5Form::Hex;
    upload_and_report(&app, &mut web, &Upload::new(SMALL_SIZE, 10)).await;

    // Multipart: hex partMd5s (parts of S3's smallest size keep this cheap).
    let mut web = Ente::new(&app, 4401, Kind::Web, Protocol::V2).await;
    web.md5_form = Md5Form::Hex;
    let upload = Upload::new(5 * 1024 * 1024 + 4_321, 11);
    let parts: Vec<&[u8]> = upload.file.chunks(5 * 1024 * 1024).collect();
    let file = web.upload_multipart(&parts, 5 * 1024 * 1024).await;
    let thumb = web.upload_single(&upload.thumb).await;
    let keys = Keys { file, thumb };
    web.report(&EnteFile::random(), &keys, &upload).await;
    assert_in_every_bucket(&app, &keys, &upload).await;
}

async fn a_report_that_is_not_json_sent_as_text_plain_gets_a_json_400(engine: Engine) {
    let app = spawn_app(engine).await;
    let web = Ente::new(&app, 4501, Kind::Web, Protocol::V2).await;
    for body in [
        "this is not json",
        r#"{"collectionID":1,"file":{"objectKey""#,
        "",
    ] {
        let r = web.report_raw("/files", body.to_owned()).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.body);
        assert!(r.body["code"].is_string(), "{body:?}: {}", r.body);
        assert!(r.body["message"].is_string(), "{body:?}: {}", r.body);
    }
}

async fn a_minimal_museum_report_with_application_json_still_works(engine: Engine) {
    let app = spawn_app(engine).await;
    let mobile = Ente::new(&app, 4601, Kind::Mobile, Protocol::V2).await;
    let bytes = bytes_of(SMALL_SIZE, 12);
    let (key, url) = mobile.upload_url(&bytes).await;
    mobile.put(&url, &bytes).await;
    let r = mobile
        .post_json(
            "/files",
            json!({"file": {"objectKey": key, "size": bytes.len()}}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["id"].is_i64(), "{}", r.body);
    assert_eq!(r.body["file"]["objectKey"], key.as_str(), "{}", r.body);
    assert_eq!(r.body["file"]["size"], bytes.len(), "{}", r.body);
}

async fn unknown_query_parameters_are_ignored_on_every_upload_endpoint(engine: Engine) {
    let app = spawn_app(engine).await;
    let web = Ente::new(&app, 4701, Kind::Web, Protocol::V1).await;
    let extra = |sep: char| format!("{sep}ts={}&foo=bar&_=1", now_ms());
    let get = |path: String| {
        let web = &web;
        async move {
            let r = web
                .call(
                    &format!("GET {path}"),
                    web.museum(reqwest::Method::GET, &path),
                )
                .await;
            assert_eq!(r.status, 200, "GET {path}: {}", r.body);
            r.body
        }
    };
    get(format!("/files/upload-eligibility{}", extra('?'))).await;
    get(format!(
        "/files/multipart-upload-urls?count=1{}",
        extra('&')
    ))
    .await;
    let urls = get(format!("/files/upload-urls?count=2{}", extra('&'))).await;

    let bytes = bytes_of(1_000, 13);
    let path = format!("/files/upload-url{}", extra('?'));
    let body = json!({"contentLength": bytes.len(), "contentMD5": md5_b64(&bytes)}).to_string();
    let r = web.post_json(&path, body).await;
    assert_eq!(r.status, 200, "POST {path}: {}", r.body);

    let path = format!("/files/multipart-upload-url{}", extra('?'));
    let part = bytes_of(5 * 1024 * 1024, 14);
    let body = json!({"contentLength": part.len(), "partLength": part.len(),
                      "partMd5s": [md5_b64(&part)]})
    .to_string();
    let r = web.post_json(&path, body).await;
    assert_eq!(r.status, 200, "POST {path}: {}", r.body);

    // And the report itself, on a v1 upload.
    let upload = Upload::new(10_000, 15);
    let take = |i: usize| {
        (
            urls["urls"][i]["objectKey"].as_str().unwrap().to_owned(),
            urls["urls"][i]["url"].as_str().unwrap().to_owned(),
        )
    };
    let ((thumb, thumb_url), (file, file_url)) = (take(0), take(1));
    web.put(&file_url, &upload.file).await;
    web.put(&thumb_url, &upload.thumb).await;
    let keys = Keys { file, thumb };
    web.report_at(
        &format!("/files{}", extra('?')),
        &EnteFile::random(),
        &keys,
        &upload,
    )
    .await;
}
