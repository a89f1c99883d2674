//! A small W3C WebDriver client: headless Chromium driven through
//! `chromedriver` (Debian's `chromium` and `chromium-driver`), for tests
//! that load pages in a real browser.
//!
//! HTTP/1.1 over a `TcpStream` to chromedriver on 127.0.0.1, one request
//! per connection (`Connection: close`), JSON bodies.
//!
//! ```no_run
//! use lanyard_e2e::webdriver::Browser;
//! let Some(browser) = Browser::for_test() else { return };
//! browser.goto("https://127.0.0.1:8443/console/").unwrap();
//! let name = browser.find("input[name=username]").unwrap();
//! browser.send_keys(&name, "a.person").unwrap();
//! browser.submit_form("form").unwrap();
//! ```

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key under which WebDriver names an element in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The longest response read from chromedriver (a full-page screenshot,
/// base64, is the largest).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// How long chromedriver has to start and say it is ready.
const STARTUP_LIMIT: Duration = Duration::from_secs(20);
/// How long one command may take (page loads and scripts have their own,
/// shorter, session timeouts).
const COMMAND_LIMIT: Duration = Duration::from_secs(90);

/// What went wrong driving the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Chromium or chromedriver is not installed; the reason.
    Unavailable(String),
    /// chromedriver or the browser did not start; what was seen.
    Start(String),
    /// Talking to chromedriver failed (connect, write, read, bad HTTP).
    Transport(String),
    /// chromedriver answered with a WebDriver error.
    WebDriver {
        /// The command, e.g. `POST /session/…/url`.
        command: String,
        /// The HTTP status.
        status: u16,
        /// The WebDriver error code, e.g. `no such element`.
        error: String,
        /// chromedriver's message.
        message: String,
    },
    /// An answer that is not the expected JSON shape.
    Protocol(String),
    /// A wait ran out; what was awaited.
    Timeout(String),
    /// Writing a file (a screenshot) failed.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(why) => write!(f, "no browser: {why}"),
            Error::Start(why) => write!(f, "the browser did not start: {why}"),
            Error::Transport(why) => write!(f, "talking to chromedriver: {why}"),
            Error::WebDriver {
                command,
                status,
                error,
                message,
            } => write!(f, "{command}: {error} (HTTP {status}): {message}"),
            Error::Protocol(why) => write!(f, "unexpected answer from chromedriver: {why}"),
            Error::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Error::Io(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Keys for [`Browser::send_keys`] and [`Browser::press`] (WebDriver's
/// code points for them).
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const SPACE: &str = "\u{E00D}";
    pub const BACKSPACE: &str = "\u{E003}";
}

/// An element in the current page, as WebDriver names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub id: String,
}

impl Element {
    /// The element as a script argument for [`Browser::execute`] (the
    /// script sees the DOM node).
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn from_json(value: &Value) -> Result<Self> {
        value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .map(|id| Element { id: id.to_owned() })
            .ok_or_else(|| Error::Protocol(format!("not an element: {value}")))
    }
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None` as the browser reports it.
    pub same_site: Option<String>,
    /// Seconds since the epoch; `None` for a session cookie.
    pub expiry: Option<u64>,
}

impl Cookie {
    fn from_json(value: &Value) -> Result<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
        Ok(Cookie {
            name: text("name").ok_or_else(|| Error::Protocol(format!("cookie: {value}")))?,
            value: text("value").unwrap_or_default(),
            path: text("path"),
            domain: text("domain"),
            secure: flag("secure"),
            http_only: flag("httpOnly"),
            same_site: text("sameSite"),
            expiry: value.get("expiry").and_then(Value::as_u64),
        })
    }
}

/// How to start the browser.
#[derive(Debug, Clone)]
pub struct Options {
    /// The window's size in CSS pixels, `(width, height)`.
    pub window: (u32, u32),
    /// How long [`Browser::find`] and the other waits poll.
    pub wait: Duration,
    /// The page-load timeout of the session.
    pub page_load: Duration,
    /// The script timeout of the session (for [`Browser::execute_async`]).
    pub script: Duration,
    /// More Chromium switches.
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: (1280, 800),
            wait: Duration::from_secs(5),
            page_load: Duration::from_secs(30),
            script: Duration::from_secs(30),
            extra_args: Vec::new(),
        }
    }
}

/// The Chromium binary: `$LANYARD_CHROMIUM`, else `/usr/bin/chromium`,
/// else `chromium` on the `PATH`.
pub fn chromium_path() -> Option<PathBuf> {
    program("LANYARD_CHROMIUM", "/usr/bin/chromium", "chromium")
}

/// The chromedriver binary: `$LANYARD_CHROMEDRIVER`, else
/// `/usr/bin/chromedriver`, else `chromedriver` on the `PATH`.
pub fn chromedriver_path() -> Option<PathBuf> {
    program(
        "LANYARD_CHROMEDRIVER",
        "/usr/bin/chromedriver",
        "chromedriver",
    )
}

fn program(var: &str, usual: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let usual = PathBuf::from(usual);
    if usual.is_file() {
        return Some(usual);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A headless Chromium session through a chromedriver of its own. Dropping
/// it ends the session (Chromium exits) and stops chromedriver.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    wait: Duration,
    _log_dir: tempfile::TempDir,
    log: PathBuf,
}

impl Browser {
    /// `Ok` when Chromium and chromedriver are installed; else why not.
    pub fn available() -> std::result::Result<(), String> {
        let mut missing = Vec::new();
        if chromium_path().is_none() {
            missing.push("chromium is not installed (apt-get install chromium)");
        }
        if chromedriver_path().is_none() {
            missing.push("chromedriver is not installed (apt-get install chromium-driver)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{}; .ci/run installs them", missing.join(" and ")))
        }
    }

    /// A browser with the default [`Options`] for a test, or `None` (after
    /// a `skipped:` line) when Chromium or chromedriver is missing. Panics
    /// when they are installed but do not start: that is a failure.
    pub fn for_test() -> Option<Self> {
        Self::for_test_with(Options::default())
    }

    /// As [`for_test`](Self::for_test), with `options`.
    pub fn for_test_with(options: Options) -> Option<Self> {
        if let Err(why) = Self::available() {
            lanyard_broker::testkit::say_skipped(&format!("browser test: {why}"));
            return None;
        }
        match Self::start(options) {
            Ok(browser) => Some(browser),
            Err(e) => panic!("starting headless Chromium: {e}"),
        }
    }

    /// Starts chromedriver on a free port of 127.0.0.1, waits (bounded)
    /// until it is ready and opens a session with headless Chromium that
    /// accepts the broker's own CA (`acceptInsecureCerts`).
    pub fn start(options: Options) -> Result<Self> {
        Self::available().map_err(Error::Unavailable)?;
        let (Some(chromium), Some(chromedriver)) = (chromium_path(), chromedriver_path()) else {
            return Err(Error::Unavailable("chromium or chromedriver".into()));
        };
        let log_dir = tempfile::tempdir().map_err(|e| Error::Start(format!("temp dir: {e}")))?;
        let log = log_dir.path().join("chromedriver.log");
        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Start(format!("run {}: {e}", chromedriver.display())))?;
        let port = match driver_port(&mut driver) {
            Ok(port) => port,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(e);
            }
        };
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            wait: options.wait,
            _log_dir: log_dir,
            log,
        };
        browser.wait_ready()?;
        browser.new_session(&chromium, &options)?;
        Ok(browser)
    }

    /// Polls `GET /status` until chromedriver says it is ready.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            let last = match self.http_within(Duration::from_secs(2), "GET", "/status", None) {
                Ok(value) if value.get("ready").and_then(Value::as_bool) == Some(true) => {
                    return Ok(())
                }
                Ok(value) => format!("not ready: {value}"),
                Err(e) => e.to_string(),
            };
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(Error::Start(format!(
                    "chromedriver exited ({status}); its log:\n{}",
                    self.driver_log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Start(format!(
                    "not ready within {STARTUP_LIMIT:?}: {last}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn new_session(&mut self, chromium: &Path, options: &Options) -> Result<()> {
        let (width, height) = options.window;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // Overlay scrollbars, as on a phone: the page is laid out and
            // screenshotted at the full window width.
            "--hide-scrollbars".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            format!("--window-size={width},{height}"),
        ];
        args.extend(options.extra_args.iter().cloned());
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let body = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": true,
                    "pageLoadStrategy": "normal",
                    "timeouts": {
                        "implicit": 0,
                        "pageLoad": millis(options.page_load),
                        "script": millis(options.script),
                    },
                    "goog:chromeOptions": {
                        "binary": chromium.to_string_lossy(),
                        "args": args,
                    },
                }
            }
        });
        let value = self.http("POST", "/session", Some(&body)).map_err(|e| {
            Error::Start(format!(
                "new session: {e}; chromedriver's log:\n{}",
                self.driver_log()
            ))
        })?;
        self.session = value
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol(format!("new session: {value}")))?
            .to_owned();
        // The window size switch sets the outer window; make the viewport
        // the requested size.
        self.set_window_size(width, height)
    }

    /// chromedriver's log (warnings and errors).
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How long [`find`](Self::find) and the other waits poll.
    pub fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
    }

    // ---- navigation ----

    /// Loads `url` and waits for the page load to complete.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    pub fn current_url(&self) -> Result<String> {
        self.cmd_string("GET", "/url", None)
    }

    pub fn title(&self) -> Result<String> {
        self.cmd_string("GET", "/title", None)
    }

    /// The current DOM, serialised.
    pub fn page_source(&self) -> Result<String> {
        self.cmd_string("GET", "/source", None)
    }

    pub fn back(&self) -> Result<()> {
        self.cmd("POST", "/back", Some(json!({}))).map(drop)
    }

    pub fn refresh(&self) -> Result<()> {
        self.cmd("POST", "/refresh", Some(json!({}))).map(drop)
    }

    /// Waits (up to the wait) until the current URL satisfies `ready`; the
    /// URL. `what` says what is awaited, for the error.
    pub fn wait_for_url(&self, what: &str, ready: impl Fn(&str) -> bool) -> Result<String> {
        let mut last = String::new();
        let found = self.wait_until(&format!("the URL to be {what}"), || {
            last = self.current_url()?;
            Ok(ready(&last).then(|| last.clone()))
        });
        found.map_err(|e| match e {
            Error::Timeout(why) => Error::Timeout(format!("{why}; it is {last}")),
            e => e,
        })
    }

    /// Polls `probe` every 50 ms until it gives `Some`, at most the wait.
    pub fn wait_until<T>(
        &self,
        what: &str,
        mut probe: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(found) = probe()? {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("{what} ({:?})", self.wait)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // ---- elements ----

    /// The first element matching the CSS selector `css`, waiting (up to
    /// the wait) for one to appear.
    pub fn find(&self, css: &str) -> Result<Element> {
        self.wait_until(&format!("an element matching `{css}`"), || {
            self.try_find(css)
        })
    }

    /// The first element matching `css` now, if any (no waiting).
    pub fn try_find(&self, css: &str) -> Result<Option<Element>> {
        Ok(self.find_all(css)?.into_iter().next())
    }

    /// Every element matching `css` now (no waiting; maybe none).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let value = self.cmd(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        value
            .as_array()
            .ok_or_else(|| Error::Protocol(format!("elements: {value}")))?
            .iter()
            .map(Element::from_json)
            .collect()
    }

    /// The elements matching `css` inside `parent` now.
    pub fn find_in(&self, parent: &Element, css: &str) -> Result<Vec<Element>> {
        let value = self.cmd(
            "POST",
            &format!("/element/{}/elements", parent.id),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        value
            .as_array()
            .ok_or_else(|| Error::Protocol(format!("elements: {value}")))?
            .iter()
            .map(Element::from_json)
            .collect()
    }

    pub fn click(&self, element: &Element) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/click", element.id),
            Some(json!({})),
        )
        .map(drop)
    }

    /// Finds `css` (waiting) and clicks it.
    pub fn click_css(&self, css: &str) -> Result<()> {
        let element = self.find(css)?;
        self.click(&element)
    }

    /// Types `text` into `element` (after what it holds).
    pub fn send_keys(&self, element: &Element, text: &str) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/value", element.id),
            Some(json!({ "text": text })),
        )
        .map(drop)
    }

    pub fn clear(&self, element: &Element) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", element.id),
            Some(json!({})),
        )
        .map(drop)
    }

    /// Finds `css` (waiting), clears it and types `text`.
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let element = self.find(css)?;
        self.clear(&element)?;
        self.send_keys(&element, text)
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> Result<String> {
        self.cmd_string("GET", &format!("/element/{}/text", element.id), None)
    }

    /// Finds `css` (waiting); its rendered text.
    pub fn text_of(&self, css: &str) -> Result<String> {
        let element = self.find(css)?;
        self.text(&element)
    }

    /// The element's attribute `name`, `None` when it has none.
    pub fn attribute(&self, element: &Element, name: &str) -> Result<Option<String>> {
        let value = self.cmd(
            "GET",
            &format!("/element/{}/attribute/{name}", element.id),
            None,
        )?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// The element's DOM property `name` (e.g. `value`, `checked`).
    pub fn property(&self, element: &Element, name: &str) -> Result<Value> {
        self.cmd(
            "GET",
            &format!("/element/{}/property/{name}", element.id),
            None,
        )
    }

    /// Whether the element is shown (WebDriver's visibility rules).
    pub fn displayed(&self, element: &Element) -> Result<bool> {
        let value = self.cmd("GET", &format!("/element/{}/displayed", element.id), None)?;
        value
            .as_bool()
            .ok_or_else(|| Error::Protocol(format!("displayed: {value}")))
    }

    /// The element's computed CSS `property` (e.g. `outline-style`).
    pub fn css_value(&self, element: &Element, property: &str) -> Result<String> {
        self.cmd_string(
            "GET",
            &format!("/element/{}/css/{property}", element.id),
            None,
        )
    }

    /// The element that has the keyboard focus.
    pub fn active_element(&self) -> Result<Element> {
        let value = self.cmd("GET", "/element/active", None)?;
        Element::from_json(&value)
    }

    /// Types `keys` (text or [`keys`](crate::webdriver::keys)) into the
    /// element that has the focus, as a person at the keyboard would.
    pub fn press(&self, keys: &str) -> Result<()> {
        let focused = self.active_element()?;
        self.send_keys(&focused, keys)
    }

    /// Submits the form matching `form_css` by clicking its submit button
    /// (as a person would, so the button's name and value are sent).
    pub fn submit_form(&self, form_css: &str) -> Result<()> {
        let form = self.find(form_css)?;
        let buttons = self.find_in(
            &form,
            "button[type=submit], input[type=submit], button:not([type])",
        )?;
        let button = buttons.first().ok_or_else(|| {
            Error::Protocol(format!("the form `{form_css}` has no submit button"))
        })?;
        self.click(button)
    }

    // ---- scripts ----

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page; what it returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` in the page; it ends by calling its last argument
    /// (`arguments[arguments.length - 1]`) with the result, within the
    /// session's script timeout.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    // ---- window and screenshots ----

    /// Makes the viewport `width` × `height` CSS pixels.
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )?;
        // The rectangle is the outer window; add what the frame takes.
        let inner = self.execute("return [window.innerWidth, window.innerHeight];", &[])?;
        let got = |i: usize| inner.get(i).and_then(Value::as_u64).unwrap_or(0);
        let (w, h) = (u64::from(width), u64::from(height));
        if (got(0), got(1)) != (w, h) && got(0) > 0 {
            self.cmd(
                "POST",
                "/window/rect",
                Some(json!({
                    "width": (2 * w).saturating_sub(got(0)),
                    "height": (2 * h).saturating_sub(got(1)),
                })),
            )?;
        }
        Ok(())
    }

    /// The viewport as PNG bytes.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self.cmd_string("GET", "/screenshot", None)?;
        decode_base64(&value)
    }

    /// The whole page (beyond the viewport, down to its end) as PNG bytes.
    pub fn full_page_screenshot(&self) -> Result<Vec<u8>> {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}))?;
        let size = |part: &str, key: &str| {
            metrics
                .get(part)
                .and_then(|s| s.get(key))
                .and_then(Value::as_f64)
                .ok_or_else(|| Error::Protocol(format!("layout metrics: {metrics}")))
        };
        // The page, and no narrower than the window (content wider than
        // the window is kept: it is what a person scrolls sideways to).
        let width = size("cssContentSize", "width")?
            .max(size("cssLayoutViewport", "clientWidth")?)
            .ceil();
        let height = size("cssContentSize", "height")?.ceil();
        let value = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
            }),
        )?;
        let data = value
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol(format!("screenshot: {value}")))?;
        decode_base64(data)
    }

    /// Runs the Chrome DevTools Protocol command `cmd` (chromedriver's
    /// extension); its result.
    pub fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// Writes the viewport as a PNG to `path` (making its folder).
    pub fn screenshot_png(&self, path: &Path) -> Result<()> {
        write_file(path, &self.screenshot()?)
    }

    /// Writes the whole page as a PNG to `path` (making its folder).
    pub fn full_page_screenshot_png(&self, path: &Path) -> Result<()> {
        write_file(path, &self.full_page_screenshot()?)
    }

    // ---- cookies ----

    /// The cookies the browser holds for the current page (HttpOnly ones
    /// too).
    pub fn cookies(&self) -> Result<Vec<Cookie>> {
        let value = self.cmd("GET", "/cookie", None)?;
        value
            .as_array()
            .ok_or_else(|| Error::Protocol(format!("cookies: {value}")))?
            .iter()
            .map(Cookie::from_json)
            .collect()
    }

    /// The cookie `name` for the current page, if held.
    pub fn cookie(&self, name: &str) -> Result<Option<Cookie>> {
        Ok(self.cookies()?.into_iter().find(|c| c.name == name))
    }

    pub fn delete_cookies(&self) -> Result<()> {
        self.cmd("DELETE", "/cookie", None).map(drop)
    }

    // ---- the wire ----

    /// A command on the session; its `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        self.http(method, &path, body.as_ref())
    }

    fn cmd_string(&self, method: &str, path: &str, body: Option<Value>) -> Result<String> {
        let value = self.cmd(method, path, body)?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("{method} {path}: not a string: {value}")))
    }

    /// One HTTP request to chromedriver; the answer's `value`, or its
    /// WebDriver error.
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.http_within(COMMAND_LIMIT, method, path, body)
    }

    /// As [`http`](Self::http), giving up when a read or write waits
    /// longer than `limit`.
    fn http_within(
        &self,
        limit: Duration,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let command = format!("{method} {path}");
        let transport = |e: std::io::Error| Error::Transport(format!("{command}: {e}"));
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).map_err(transport)?;
        conn.set_read_timeout(Some(limit)).map_err(transport)?;
        conn.set_write_timeout(Some(limit)).map_err(transport)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        if (method != "GET" && method != "DELETE") || !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        conn.write_all(request.as_bytes()).map_err(transport)?;
        let (status, body) = read_response(&mut conn).map_err(|e| match e {
            Error::Transport(why) => Error::Transport(format!("{command}: {why}")),
            e => e,
        })?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!(
                "{command}: HTTP {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ))
        })?;
        let value = json.get("value").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let message = text("message");
        Err(Error::WebDriver {
            command,
            status,
            error: text("error"),
            // chromedriver adds a long stack trace after the first lines.
            message: message.lines().take(3).collect::<Vec<_>>().join(" / "),
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.http_within(Duration::from_secs(10), "DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads chromedriver's port from its first lines on stdout ("… started
/// successfully on port N."), at most [`STARTUP_LIMIT`].
fn driver_port(driver: &mut Child) -> Result<u16> {
    let stdout = driver
        .stdout
        .take()
        .ok_or_else(|| Error::Start("no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                let _ = tx.send(Ok(port));
                // Keep draining so chromedriver never blocks on the pipe.
                continue;
            }
            if seen.len() < 4096 {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(STARTUP_LIMIT) {
        Ok(Ok(port)) => Ok(port),
        Ok(Err(seen)) => Err(Error::Start(format!("it exited saying:\n{seen}"))),
        Err(_) => Err(Error::Start(format!(
            "no port announced within {STARTUP_LIMIT:?}"
        ))),
    }
}

/// Reads an HTTP/1.1 response: its status and body (Content-Length bytes;
/// without one, up to the end of the connection). chromedriver may keep
/// the connection open after answering, so the length is what ends it.
fn read_response(conn: &mut TcpStream) -> Result<(u16, Vec<u8>)> {
    let io = |e: std::io::Error| Error::Transport(e.to_string());
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if raw.len() > 64 * 1024 {
            return Err(Error::Transport("response head over 64 KiB".into()));
        }
        match conn.read(&mut buf).map_err(io)? {
            0 => return Err(Error::Transport("no complete response head".into())),
            n => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw.split_off(split + 4);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Transport(format!("bad status line: {head}")))?;
    let header = |wanted: &str| {
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some() {
        return Err(Error::Transport(format!("a body not by length: {head}")));
    }
    match header("content-length") {
        Some(length) => {
            let length: usize = length
                .parse()
                .map_err(|_| Error::Transport(format!("bad Content-Length: {length}")))?;
            if length > MAX_RESPONSE {
                return Err(Error::Transport(format!(
                    "response of {length} bytes, over {MAX_RESPONSE}"
                )));
            }
            if body.len() < length {
                let mut rest = vec![0u8; length - body.len()];
                conn.read_exact(&mut rest).map_err(|e| {
                    Error::Transport(format!("body cut short ({length} bytes announced): {e}"))
                })?;
                body.extend_from_slice(&rest);
            }
            body.truncate(length);
        }
        None => {
            conn.take((MAX_RESPONSE - body.len().min(MAX_RESPONSE)) as u64 + 1)
                .read_to_end(&mut body)
                .map_err(io)?;
            if body.len() > MAX_RESPONSE {
                return Err(Error::Transport(format!(
                    "response over {MAX_RESPONSE} bytes"
                )));
            }
        }
    }
    Ok((status, body))
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    data_encoding::BASE64
        .decode(text.as_bytes())
        .map_err(|e| Error::Protocol(format!("screenshot is not base64: {e}")))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::Io(format!("write {}: {e}", path.display())))
}
