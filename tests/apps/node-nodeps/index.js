const http = require("http");
const port = parseInt(process.env.PORT || "5000", 10);
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(`hello from node ${process.version} (${process.env.GREETING || "no greeting"})\n`);
  })
  .listen(port, "0.0.0.0");
