//! Bad input, with real files each test makes: an empty body, bytes that are no image, a
//! format the service does not read, a truncated file, headers that declare a decompression
//! bomb or a strip, broken base64, too many images, and types the route does not read. Each
//! is a clear problem+json, the memory stays bounded (the bomb's pixels are never allocated),
//! and the service answers the next good request.

use image_orientation::{ImageOrientation, MAX_IMAGES, Page};
use oxiserve::testing::TestApp;
use serde_json::json;

async fn app() -> TestApp<ImageOrientation> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    TestApp::start(ImageOrientation, models).await.expect("the model loads")
}

fn page_png() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/page-landscape.png"))
        .unwrap()
}

/// CRC-32 (IEEE) of `bytes`, as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG whose header declares `width` x `height` RGB pixels, with a few bytes of data: what
/// a decompression bomb's header looks like, and all a decoder that trusts it needs to see.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out
    };
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &header));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// A 2 x 2 BMP: a real image, of a format the service does not read.
fn bmp() -> Vec<u8> {
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&(54u32 + 16).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    for value in [40u32, 2, 2] {
        bmp.extend_from_slice(&value.to_le_bytes());
    }
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend_from_slice(&[255; 16]);
    bmp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_clear_problems_and_the_service_goes_on() {
    let app = app().await;
    let good = page_png();
    let truncated = good[..good.len() / 2].to_vec();
    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle..middle + 64].fill(0xAB);
    let cases: [(&str, Vec<u8>, u16, &str); 7] = [
        ("empty", Vec::new(), 422, "is empty"),
        ("no image", b"this is a letter, not a picture".to_vec(), 415, "not a JPEG, PNG or WebP"),
        ("a BMP", bmp(), 415, "Bmp image"),
        ("truncated", truncated, 422, "cannot be decoded"),
        ("corrupt", corrupt, 422, "cannot be decoded"),
        ("a bomb", png_declaring(100_000, 100_000), 422, "more than the 40 megapixels"),
        ("a strip", png_declaring(5_000, 10), 422, "no side may be 20 times"),
    ];
    for (what, bytes, status, detail) in cases {
        let response = app.post("/v1/orientation", "image/png", bytes).await;
        let problem = response.problem();
        assert_eq!(problem.status, status, "{what}: {problem:?}");
        assert!(problem.detail.contains(detail), "{what}: {problem:?}");
        assert!(problem.detail.contains("images[0]") || problem.field.is_some(), "{problem:?}");
        // The service is still there, and right.
        let response = app.post("/v1/orientation", "image/png", good.clone()).await;
        assert_eq!(response.json::<Page>().orientation, 0, "after {what}");
    }
}

#[tokio::test]
async fn bad_requests_around_the_images_are_problems_naming_the_field() {
    let app = app().await;
    let good = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(page_png())
    };
    let too_many = vec![good.clone(); MAX_IMAGES + 1];
    for (path, body, field, status) in [
        ("/v1/orientation", json!({"image": "not base64!"}), "image", 422),
        ("/v1/orientation", json!({"image": 7}), "image", 422),
        ("/v1/orientation", json!({"picture": good}), "picture", 422),
        ("/v1/orientation/batch", json!({"images": []}), "images", 422),
        ("/v1/orientation/batch", json!({"images": too_many}), "images", 422),
        // Valid base64 of bytes that are no image: a 415 whose detail names the image.
        ("/v1/predict", json!({"images": [good, "AAAA"]}), "images[1]", 415),
    ] {
        let problem = app.post_json(path, body.to_string()).await.problem();
        assert_eq!(problem.status, status, "{path} {problem:?}");
        let named = problem.field.as_deref() == Some(field) || problem.detail.contains(field);
        assert!(named, "{path}: {problem:?} names {field}");
    }
    // A type the route does not read is a 415 naming those it does; an upload works.
    let problem = app.post("/v1/orientation", "image/gif", page_png()).await.problem();
    assert_eq!(problem.status, 415);
    assert!(problem.detail.contains("`image/jpeg`, `image/png`, `image/webp`"), "{problem:?}");
    let boundary = "page-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"page.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&page_png());
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let response = app.post("/v1/orientation", &content_type, form).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json::<Page>().orientation, 0);
}
