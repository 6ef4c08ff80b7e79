"use strict";
// A long-lived Node process for the tests: one JSON job per stdin line, one JSON answer per
// stdout line, so many cases cost one process.
//   {"kind": "pac", "pac": TEXT, "cases": [[url, host], ...]}  -> FindProxyForURL answers
//   {"kind": "env", "env": {NAME: VALUE}, "urls": [...]}         -> "proxy" | "direct" per URL,
//       as proxy-from-env (what axios and other Node clients use) reads the variables
// The PAC runtime is defined the way browsers define it (dnsDomainIs as Mozilla's and
// Chromium's suffix test, isInNet pure and only for IPv4 literals); every DNS function throws,
// so a PAC file that would look a name up fails the test instead.
const readline = require("readline");
const vm = require("vm");
const proxyFromEnv = require(process.env.PROXY_FROM_ENV || "/usr/share/nodejs/proxy-from-env");

function isIPv4(s) {
  return typeof s === "string" && /^\d{1,3}(\.\d{1,3}){3}$/.test(s) &&
    s.split(".").every((o) => Number(o) <= 255);
}
function toInt(s) {
  return s.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}
function noDns(fn, host) {
  throw new Error(`PAC called ${fn}(${JSON.stringify(host)}): that would resolve a name`);
}
function pacRuntime() {
  return {
    dnsDomainIs: (host, domain) =>
      host.length >= domain.length && host.substring(host.length - domain.length) === domain,
    isPlainHostName: (host) => host.indexOf(".") < 0,
    localHostOrDomainIs: (host, hostdom) =>
      host === hostdom || hostdom.lastIndexOf(host + ".", 0) === 0,
    dnsDomainLevels: (host) => host.split(".").length - 1,
    shExpMatch: (str, sh) => {
      const re = sh.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
      return new RegExp("^" + re + "$").test(str);
    },
    // pure: an IPv4 literal only; a name would need DNS, so it fails the test
    isInNet: (host, pattern, mask) => {
      if (!isIPv4(host)) noDns("isInNet", host);
      if (!isIPv4(pattern) || !isIPv4(mask)) throw new Error(`bad isInNet(${pattern}, ${mask})`);
      const m = toInt(mask);
      return ((toInt(host) & m) >>> 0) === ((toInt(pattern) & m) >>> 0);
    },
    isInNetEx: (host) => noDns("isInNetEx", host),
    dnsResolve: (host) => noDns("dnsResolve", host),
    dnsResolveEx: (host) => noDns("dnsResolveEx", host),
    isResolvable: (host) => noDns("isResolvable", host),
    isResolvableEx: (host) => noDns("isResolvableEx", host),
    myIpAddress: () => "127.0.0.1",
    alert: () => undefined,
  };
}

function pac(job) {
  const context = vm.createContext(pacRuntime());
  vm.runInContext(job.pac, context, { filename: "proxy.pac" });
  return job.cases.map(([url, host]) => {
    try {
      return String(context.FindProxyForURL(url, host));
    } catch (e) {
      return "ERROR " + e.message;
    }
  });
}

const PROXY_VARIABLES = /^(https?|all|no|grpc)_proxy$/i;
function env(job) {
  for (const name of Object.keys(process.env)) {
    if (PROXY_VARIABLES.test(name)) delete process.env[name];
  }
  Object.assign(process.env, job.env);
  return job.urls.map((url) => (proxyFromEnv.getProxyForUrl(url) ? "proxy" : "direct"));
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const job = JSON.parse(line);
  let answer;
  try {
    answer = { ok: job.kind === "pac" ? pac(job) : env(job) };
  } catch (e) {
    answer = { error: String(e && e.stack || e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
