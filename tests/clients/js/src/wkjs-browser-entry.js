// Browser bundle entry for wukongimjssdk 1.0.4 (the demo chat page, api/static/demo/).
// esbuild turns this into an IIFE that defines the global `WKJS` with the same exports
// as the Node bundle (src/wkjs-entry.js). The SDK imports the `buffer` package itself,
// but MessageStream uses a bare global `Buffer`, so the polyfill is also put on globalThis.
// crypto-js's optional require("crypto") resolves to nothing (its package.json maps it
// to false for browsers) and it uses window.crypto.getRandomValues instead.
import { Buffer } from "buffer";

if (typeof globalThis.Buffer === "undefined") globalThis.Buffer = Buffer;

export * from "./wkjs-entry.js";
