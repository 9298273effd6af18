//! The Docker-API engine a container takeover drives (Docker, balenaEngine,
//! `podman system service`), through bollard over its unix socket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ImportImageOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::image::package::DATA;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("container engine {address}: {source}")]
    Connect {
        address: String,
        source: DockerError,
    },
    #[error("image {digest}: {message}")]
    Image { digest: String, message: String },
    #[error("container {name}: {source}")]
    Container { name: String, source: DockerError },
    #[error("container {name} {what}")]
    NotReady { name: String, what: String },
    #[error("container data {path}: {source}")]
    Data {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A connection to a Docker-API engine over its unix socket, at the API
/// version both sides speak (balenaEngine's is older than bollard's).
pub struct Engine {
    docker: Docker,
}

fn not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What to run: a loaded image with a data directory and the contract's limits.
pub struct RunSpec<'a> {
    pub name: &'a str,
    pub image_id: &'a str,
    pub data_dir: &'a Path,
    pub memory_bytes: u64,
    pub cpu_millis: u32,
    pub contract: &'a str,
}

impl Engine {
    pub async fn connect(address: &str) -> Result<Self, EngineError> {
        let err = |source| EngineError::Connect {
            address: address.to_owned(),
            source,
        };
        let docker = Docker::connect_with_unix(address, 120, bollard::API_DEFAULT_VERSION)
            .map_err(err)?
            .negotiate_version()
            .await
            .map_err(err)?;
        Ok(Self { docker })
    }

    /// The API version agreed with the engine.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Load the image tar at `tar` unless the engine has `image_id` already;
    /// true if it was loaded now. The tar is streamed, never held in memory.
    pub async fn ensure_image(&self, tar: &Path, image_id: &str) -> Result<bool, EngineError> {
        let err = |message: String| EngineError::Image {
            digest: image_id.to_owned(),
            message,
        };
        match self.docker.inspect_image(image_id).await {
            Ok(_) => return Ok(false),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(err(e.to_string())),
        }
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| err(format!("{}: {e}", tar.display())))?;
        let body =
            bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 18));
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut progress = self.docker.import_image(options, body, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| err(format!("loading: {e}")))?;
        }
        self.docker
            .inspect_image(image_id)
            .await
            .map_err(|e| err(format!("not in the engine after loading: {e}")))?;
        Ok(true)
    }

    /// Create and start `spec`'s container, replacing one of the same name.
    pub async fn run(&self, spec: &RunSpec<'_>) -> Result<String, EngineError> {
        let err = |source| EngineError::Container {
            name: spec.name.to_owned(),
            source,
        };
        self.remove(spec.name).await?;
        let limit = |name: &str| ResourcesUlimits {
            name: Some(name.into()),
            soft: Some(1024),
            hard: Some(1024),
        };
        let host = HostConfig {
            binds: Some(vec![format!("{}:{DATA}", spec.data_dir.display())]),
            network_mode: Some("host".into()),
            memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes as i64),
            nano_cpus: (spec.cpu_millis > 0).then_some(i64::from(spec.cpu_millis) * 1_000_000),
            ulimits: Some(vec![limit("nofile"), limit("nproc")]),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image_id.into()),
            cmd: Some(vec![
                "run".into(),
                "--config".into(),
                format!("{DATA}/configuration.yaml"),
            ]),
            labels: Some(HashMap::from([(
                "org.edgexfoundry.device-lorawan.contract".to_string(),
                spec.contract.to_string(),
            )])),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(err)?;
        self.docker
            .start_container(spec.name, None)
            .await
            .map_err(err)?;
        Ok(created.id)
    }

    /// Whether `name` runs; `Err` with its exit code when it stopped.
    pub async fn check_running(&self, name: &str) -> Result<(), EngineError> {
        let c = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(|source| EngineError::Container {
                name: name.to_owned(),
                source,
            })?;
        let state = c.state.unwrap_or_default();
        if state.running == Some(true) {
            return Ok(());
        }
        Err(EngineError::NotReady {
            name: name.to_owned(),
            what: format!(
                "stopped (exit code {}, out of memory: {}); it said: {}",
                state.exit_code.unwrap_or(-1),
                state.oom_killed.unwrap_or(false),
                self.tail(name, 5).await
            ),
        })
    }

    /// The last `lines` of a container's output, on one line (the service
    /// never logs keys).
    async fn tail(&self, name: &str, lines: usize) -> String {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut out = Vec::new();
        let mut logs = self.docker.logs(name, Some(options));
        while let Some(Ok(chunk)) = logs.next().await {
            out.push(chunk.to_string().trim_end().to_owned());
        }
        out.join(" | ")
    }

    /// Stop (SIGTERM, then SIGKILL after 10 s) and remove `name`, if present.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        let err = |source| EngineError::Container {
            name: name.to_owned(),
            source,
        };
        let stop = StopContainerOptionsBuilder::default().t(10).build();
        match self.docker.stop_container(name, Some(stop)).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(err(e)),
        }
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(name, Some(rm)).await {
            Err(e) if !not_found(&e) => Err(err(e)),
            _ => Ok(()),
        }
    }
}
