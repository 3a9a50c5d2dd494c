// Node socket.io group fan-out server for `make bench-compare` (one of 3 processes).
// Clients join the rooms in their handshake auth ({rooms: [...]}); a "msg" event
// {room, ...} is emitted to the room on every process through @socket.io/redis-adapter.
// Nothing is stored.    node socketio_server.js PORT REDIS_URL
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const url = process.argv[3];

async function main() {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({ transports: ["websocket"], adapter: createAdapter(pub, sub) });
  io.on("connection", (socket) => {
    for (const room of (socket.handshake.auth && socket.handshake.auth.rooms) || []) socket.join(room);
    socket.on("msg", (data) => io.to(data.room).emit("msg", data));
  });
  io.listen(port);
  console.log(`socket.io listening on ${port}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
