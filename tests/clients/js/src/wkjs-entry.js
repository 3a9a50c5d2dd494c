// Bundle entry for wukongimjssdk 1.0.4 (ESM-only, extensionless imports).
// esbuild turns this into dist/wkjs.cjs so plain Node 20 `require()` works.
// lib/sdk.js re-exports model/const/index but NOT connect_manager or proto,
// so ConnectStatus / PacketType are pulled from their own modules here.
export { default as WKSDK } from "wukongimjssdk/lib/index.js";
export * from "wukongimjssdk/lib/sdk.js";
export { ConnectStatus, ConnectManager } from "wukongimjssdk/lib/connect_manager.js";
export { PacketType, Setting, SendPacket, RecvPacket } from "wukongimjssdk/lib/proto.js";
export { default as Proto } from "wukongimjssdk/lib/proto.js";
export { SecurityManager } from "wukongimjssdk/lib/security.js";
export { WKConfig } from "wukongimjssdk/lib/config.js";
