//! QuickJS through rquickjs: the sandbox the module's doc describes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::{Context, Ctx, Function, Runtime};

use super::types::{Decoded, JsError, DEFAULT_MEMORY, LEGACY_ENCODER_FPORT};

/// Lines of `console` output a codec may log a minute; the rest are counted.
const CONSOLE_LINES_A_MINUTE: u64 = 10;

/// `console` and `Buffer`, defined once per context.
const PRELUDE: &str = include_str!("prelude.js");

/// The vendor's script becomes the body of `__lorawan_codec`, on the same
/// first line so that errors keep their line numbers; each call runs it
/// afresh and takes the entry points it defined.
const WRAP_HEAD: &str = "function __lorawan_codec() {";
const WRAP_TAIL: &str = r#"
;return {
  decodeUplink: typeof decodeUplink === "function" ? decodeUplink : undefined,
  encodeDownlink: typeof encodeDownlink === "function" ? encodeDownlink : undefined,
  Decode: typeof Decode === "function" ? Decode : undefined,
  Encode: typeof Encode === "function" ? Encode : undefined,
  Decoder: typeof Decoder === "function" ? Decoder : undefined,
  Encoder: typeof Encoder === "function" ? Encoder : undefined,
};
}
"#;

/// What the engine adds around a vendor's script: the calls the service
/// makes, in and out as JSON text (one parse each way, no per-field FFI),
/// and the clean-up of globals a call created.
const GLUE: &str = r#"
var __lorawan_names = null;
function __lorawan_clean() {
  var names = Object.getOwnPropertyNames(globalThis);
  if (names.length === __lorawan_names.length) return;
  var keep = {};
  for (var i = 0; i < __lorawan_names.length; i++) keep[__lorawan_names[i]] = true;
  for (var j = 0; j < names.length; j++) if (!keep[names[j]]) delete globalThis[names[j]];
}
function __lorawan_entries() {
  var c = __lorawan_codec.call(globalThis);
  __lorawan_clean();
  return [!!(c.decodeUplink || c.Decode || c.Decoder), !!(c.encodeDownlink || c.Encode || c.Encoder)];
}
function __lorawan_decode(bytes, fPort, recvTime, variables) {
  try {
    var c = __lorawan_codec.call(globalThis), f, out;
    var vars = JSON.parse(variables);
    if ((f = c.decodeUplink)) out = f({ bytes: bytes, fPort: fPort, recvTime: new Date(recvTime), variables: vars });
    else if ((f = c.Decode)) out = { data: f(fPort, bytes, vars) };
    else if ((f = c.Decoder)) out = { data: f(bytes, fPort) };
    else throw new Error("the codec has no decodeUplink, Decode or Decoder");
    return JSON.stringify(out === undefined ? null : out);
  } finally {
    __lorawan_clean();
  }
}
function __lorawan_encode(data, variables, fPort) {
  try {
    var c = __lorawan_codec.call(globalThis), f, out;
    var d = JSON.parse(data), vars = JSON.parse(variables);
    if ((f = c.encodeDownlink)) out = f({ data: d, variables: vars });
    else if ((f = c.Encode)) out = { bytes: f(fPort, d, vars), fPort: fPort };
    else if ((f = c.Encoder)) out = { bytes: f(d, fPort), fPort: fPort };
    else throw new Error("the codec has no encodeDownlink, Encode or Encoder");
    if (out && out.bytes && typeof out.bytes.length === "number" && !Array.isArray(out.bytes))
      out.bytes = Array.prototype.slice.call(out.bytes);
    return JSON.stringify(out === undefined ? null : out);
  } finally {
    __lorawan_clean();
  }
}
__lorawan_names = Object.getOwnPropertyNames(globalThis);
"#;

/// CPU time this thread has used, ns: the clock a codec's budget runs on.
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; the thread
    // CPU clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `console` output of one codec: at most [`CONSOLE_LINES_A_MINUTE`] lines
/// a minute reach the log; every line is counted.
#[derive(Debug, Default)]
struct Console {
    lines: AtomicU64,
    logged: AtomicU64,
    /// Start of the current minute (s since the codec's epoch) and lines in it.
    window: std::sync::Mutex<(u64, u64)>,
}

impl Console {
    fn line(&self, file: &str, level: &str, text: &str, now_s: u64) {
        self.lines.fetch_add(1, Relaxed);
        {
            let mut w = self.window.lock().expect("console lock");
            if now_s >= w.0 + 60 {
                *w = (now_s, 0);
            }
            if w.1 >= CONSOLE_LINES_A_MINUTE {
                return;
            }
            w.1 += 1;
        }
        self.logged.fetch_add(1, Relaxed);
        let text: String = text.chars().take(500).collect();
        match level {
            "error" => tracing::error!(codec = %file, "console: {text}"),
            "warn" => tracing::warn!(codec = %file, "console: {text}"),
            "debug" => tracing::debug!(codec = %file, "console: {text}"),
            _ => tracing::info!(codec = %file, "console: {text}"),
        }
    }
}

/// One loaded script.
pub struct JsCodec {
    file: String,
    runtime: Runtime,
    context: Context,
    /// Thread CPU ns after which the running call is interrupted; 0: none.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
    budget: Duration,
    memory: usize,
    pub has_encoder: bool,
    console: Arc<Console>,
    /// When a warning was last logged (s since `epoch`): at most one a minute.
    warned_at: AtomicU64,
}

impl std::fmt::Debug for JsCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsCodec({})", self.file)
    }
}

fn exception(ctx: &Ctx<'_>, e: rquickjs::Error) -> (String, Option<u32>) {
    if !matches!(e, rquickjs::Error::Exception) {
        return (e.to_string(), None);
    }
    let v = ctx.catch();
    if let Some(obj) = v.as_object() {
        let message: String = obj.get("message").unwrap_or_default();
        let name: String = obj.get("name").unwrap_or_default();
        // QuickJS puts `file:line:column` in the stack ("    at file.js:4:12").
        let stack: String = obj.get("stack").unwrap_or_default();
        let line = stack.lines().find_map(|l| {
            let mut parts = l.trim().trim_end_matches(')').rsplit(':');
            let (last, before) = (parts.next()?, parts.next()?);
            match (before.parse::<u32>(), last.parse::<u32>()) {
                (Ok(line), Ok(_)) => Some(line),
                (_, Ok(line)) => Some(line),
                _ => None,
            }
        });
        let text = if name.is_empty() {
            message
        } else {
            format!("{name}: {message}")
        };
        return (text, line);
    }
    let text = v
        .as_string()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| format!("{v:?}"));
    (text, None)
}

impl JsCodec {
    /// Compile `source` (from `path`); a syntax error names the file and line.
    pub fn load(
        path: &Path,
        source: &str,
        budget: Duration,
        memory: usize,
    ) -> Result<Self, JsError> {
        let file = path.display().to_string();
        let load = |message: String| JsError::Load {
            file: file.clone(),
            message,
        };
        let runtime = Runtime::new().map_err(|e| load(e.to_string()))?;
        runtime.set_memory_limit(memory);
        runtime.set_max_stack_size(256 << 10);
        let deadline = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let d = deadline.clone();
        // QuickJS asks every few thousand operations, on the calling thread.
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let at = d.load(Relaxed);
            at != 0 && thread_cpu_ns() > at
        })));
        // The base intrinsics only: no std/os modules, no loader.
        let context = Context::full(&runtime).map_err(|e| load(e.to_string()))?;
        let codec = Self {
            file: file.clone(),
            runtime,
            context,
            deadline,
            epoch,
            budget,
            memory,
            has_encoder: false,
            warned_at: AtomicU64::new(0),
            console: Arc::default(),
        };
        codec.arm();
        let loaded = codec.context.with(|ctx| {
            let (console, name) = (codec.console.clone(), file.clone());
            let log = Function::new(ctx.clone(), move |level: String, text: String| {
                console.line(&name, &level, &text, epoch.elapsed().as_secs());
            })
            .map_err(|e| (e.to_string(), None))?;
            ctx.globals()
                .set("__lorawan_log", log)
                .map_err(|e| (e.to_string(), None))?;
            ctx.eval::<(), _>(PRELUDE).map_err(|e| exception(&ctx, e))?;
            let mut opts = rquickjs::context::EvalOptions::default();
            opts.global = true;
            opts.strict = false;
            opts.filename = Some(file.clone());
            let wrapped = [WRAP_HEAD, source, WRAP_TAIL].concat();
            ctx.eval_with_options::<(), _>(wrapped, opts)
                .map_err(|e| exception(&ctx, e))?;
            ctx.eval::<(), _>(GLUE).map_err(|e| exception(&ctx, e))?;
            // Runs the script's top level once: its errors show at load.
            let entries: Function = ctx
                .globals()
                .get("__lorawan_entries")
                .map_err(|e| (e.to_string(), None))?;
            let found: Vec<bool> = entries.call(()).map_err(|e| exception(&ctx, e))?;
            let at = |i: usize| found.get(i).copied().unwrap_or(false);
            let (decoder, encoder) = (at(0), at(1));
            if !decoder {
                return Err((
                    "defines no decodeUplink function (nor a legacy Decode or Decoder)".to_string(),
                    None,
                ));
            }
            Ok(encoder)
        });
        codec.disarm();
        match loaded {
            Ok(enc) => Ok(Self {
                has_encoder: enc,
                ..codec
            }),
            Err((message, line)) => Err(load(match line {
                Some(l) => format!("line {l}: {message}"),
                None => message,
            })),
        }
    }

    fn arm(&self) {
        let at = thread_cpu_ns() + self.budget.as_nanos() as u64;
        self.deadline.store(at.max(1), Relaxed);
    }

    fn disarm(&self) {
        self.deadline.store(0, Relaxed);
    }

    /// Call glue function `name` with `args`; its JSON text result.
    fn call<A>(&self, name: &str, args: A) -> Result<serde_json::Value, JsError>
    where
        A: for<'js> rquickjs::function::IntoArgs<'js>,
    {
        self.arm();
        let started = thread_cpu_ns();
        let out = self.context.with(|ctx| {
            let f: Function = ctx.globals().get(name).map_err(|e| (e.to_string(), None))?;
            f.call::<_, String>(args).map_err(|e| exception(&ctx, e))
        });
        self.disarm();
        match out {
            Ok(text) => serde_json::from_str(&text).map_err(|e| JsError::Output {
                file: self.file.clone(),
                message: format!("its result is not JSON: {e}"),
            }),
            Err((message, _)) => {
                // QuickJS may have no memory left to build the error itself.
                // QuickJS throws `null` when it cannot even allocate the
                // out-of-memory error (a script throwing null looks the same).
                let full = message == "null" || message.starts_with("Null");
                // After an interrupt or an out-of-memory, collect what the
                // stopped call left, so the next call starts clean.
                self.runtime.run_gc();
                Err(
                    if message.contains("interrupted")
                        || thread_cpu_ns().saturating_sub(started) >= self.budget.as_nanos() as u64
                    {
                        JsError::Budget {
                            file: self.file.clone(),
                            ms: self.budget.as_millis(),
                        }
                    } else if full
                        || message.contains("out of memory")
                        || message.contains("stack overflow")
                    {
                        JsError::Memory {
                            file: self.file.clone(),
                            mb: self.memory >> 20,
                        }
                    } else {
                        JsError::Threw {
                            file: self.file.clone(),
                            message,
                        }
                    },
                )
            }
        }
    }

    /// `decodeUplink` of `bytes` on `fport`; `variables` is a JSON object.
    pub fn decode(
        &self,
        bytes: &[u8],
        fport: u8,
        recv_ms: f64,
        variables: &str,
    ) -> Result<Decoded, JsError> {
        let out = self.call(
            "__lorawan_decode",
            (bytes.to_vec(), fport, recv_ms, variables),
        )?;
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let Some(obj) = out.as_object() else {
            return Err(JsError::Output {
                file: self.file.clone(),
                message: "decodeUplink returned no object".into(),
            });
        };
        Ok(Decoded {
            data: obj.get("data").cloned().unwrap_or(serde_json::Value::Null),
            warnings: obj.get("warnings").map(strings).unwrap_or_default(),
            errors: obj.get("errors").map(strings).unwrap_or_default(),
        })
    }

    /// `encodeDownlink` of `data` (or a legacy encoder, on
    /// [`LEGACY_ENCODER_FPORT`]): the bytes and the FPort.
    pub fn encode(
        &self,
        data: &serde_json::Value,
        variables: &str,
    ) -> Result<(Vec<u8>, u8), JsError> {
        let out = self.call(
            "__lorawan_encode",
            (
                data.to_string(),
                variables.to_string(),
                LEGACY_ENCODER_FPORT,
            ),
        )?;
        let bad = |message: String| JsError::Output {
            file: self.file.clone(),
            message,
        };
        let errors: Vec<String> = out["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if !errors.is_empty() {
            return Err(bad(errors.join("; ")));
        }
        let bytes = out["bytes"]
            .as_array()
            .ok_or_else(|| bad("encodeDownlink returned no bytes".into()))?
            .iter()
            .map(|b| b.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("encodeDownlink's bytes are not all 0..=255".into()))?;
        let fport = out["fPort"]
            .as_u64()
            .filter(|p| (1..=223).contains(p))
            .ok_or_else(|| bad("encodeDownlink's fPort is not 1..=223".into()))?
            as u8;
        Ok((bytes, fport))
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// `console` lines the codec wrote, and how many of them were logged.
    pub fn console_lines(&self) -> (u64, u64) {
        (
            self.console.lines.load(Relaxed),
            self.console.logged.load(Relaxed),
        )
    }

    /// Whether a warning may be logged now (one a minute per codec; the
    /// rest are only counted).
    pub fn may_log_warning(&self) -> bool {
        let now = self.epoch.elapsed().as_secs() + 60;
        let last = self.warned_at.load(Relaxed);
        (last == 0 || now >= last + 60)
            && self
                .warned_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

/// A JavaScript literal (a vendor's test file: JSON with comments, hex
/// numbers, trailing commas) as JSON, read in a sandbox of its own.
pub fn eval_literal(text: &str) -> Result<serde_json::Value, String> {
    let runtime = Runtime::new().map_err(|e| e.to_string())?;
    runtime.set_memory_limit(DEFAULT_MEMORY);
    let deadline = thread_cpu_ns() + 1_000_000_000;
    runtime.set_interrupt_handler(Some(Box::new(move || thread_cpu_ns() > deadline)));
    let context = Context::full(&runtime).map_err(|e| e.to_string())?;
    let json = context.with(|ctx| {
        ctx.eval::<String, _>(format!("JSON.stringify((\n{text}\n))"))
            .map_err(|e| exception(&ctx, e).0)
    })?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
