//! Pulls against a real registry: Debian's docker-registry on 127.0.0.1, pushed to with the
//! OCI client from the test image's archive, pulled by podvisor's puller.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use podvisor_runtime::image::ImageStore;
use podvisor_runtime::pull::{PullSettings, Puller};

struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("registry-data").display()
        ),
    )
    .unwrap();
    let log = dir.join("registry.log");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("docker-registry runs (scripts/setup installs it)");
    let registry = Registry { child, addr, log };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&registry.addr).is_ok() {
            return registry;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the registry did not listen on {}", registry.addr);
}

/// The config and layer blobs of the OCI archive the test-image script builds.
fn archive_blobs(archive: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut files = std::collections::HashMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().trim_start_matches("./").to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        files.insert(name, buf);
    }
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
    let blob = |d: &str| files[&format!("blobs/{}", d.replace(':', "/"))].clone();
    let index = json(&files["index.json"]);
    let manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap().iter().map(|l| blob(l["digest"].as_str().unwrap())).collect();
    (config, layers)
}

fn manifest_gets(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("response completed")
                && l.contains("http.request.method=GET")
                && l.contains("http.request.uri=/v2/busybox/manifests/1.36 ")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_pushed_to_a_local_registry_are_pulled_and_unpacked() {
    let dir = std::env::temp_dir().join(format!("podvisor-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("busybox.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-test-image");
    assert!(Command::new(script).arg(&archive).stdout(Stdio::null()).status().unwrap().success());
    let registry = start_registry(&dir);

    let (config, layers) = archive_blobs(&archive);
    let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    let reference: Reference = format!("{}/busybox:1.36", registry.addr).parse().unwrap();
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|l| ImageLayer::new(l, "application/vnd.oci.image.layer.v1.tar+gzip".into(), None))
        .collect();
    let config = Config::new(config, "application/vnd.oci.image.config.v1+json".into(), None);
    client.push(&reference, &layers, config, &RegistryAuth::Anonymous, None).await.expect("push");

    let store = ImageStore::open(&dir.join("data")).unwrap();
    let puller = Puller::new(PullSettings { insecure: vec![registry.addr.clone()], docker_config: None });
    let name = format!("{}/busybox:1.36", registry.addr);
    let image = puller.pull(&store, &name).await.expect("pull");
    assert_eq!(store.resolve(&name).map(|i| i.id), Some(image.id.clone()));
    assert_eq!(std::fs::read_link(image.rootfs.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!(image.config.cmd, Some(vec!["/bin/sh".to_string()]));
    let one_pull = manifest_gets(&registry.log);
    assert!(one_pull >= 1, "the registry saw the pull: {}", std::fs::read_to_string(&registry.log).unwrap());

    // Two pulls of one reference at once are one pull.
    let (a, b) = tokio::join!(puller.pull(&store, &name), puller.pull(&store, &name));
    assert_eq!(a.unwrap().id, b.unwrap().id);
    assert_eq!(manifest_gets(&registry.log), 2 * one_pull, "the second concurrent pull shared the first");

    let missing = puller.pull(&store, &format!("{}/busybox:nope", registry.addr)).await.unwrap_err();
    assert!(matches!(missing, podvisor_runtime::pull::PullError::Registry { .. }), "{missing:?}");
    assert!(
        missing.to_string().starts_with(&format!("failed to pull and unpack image \"{}/busybox:nope\"", registry.addr)),
        "{missing}"
    );
    drop(registry);
    std::fs::remove_dir_all(&dir).unwrap();
}
