-- wrk script for the proxy-upload workload: every request is a POST of a
-- 1 MiB body (wrk builds the request once and adds its Content-Length) to
-- the path in the URL; the backend reads it all, then answers "uploaded".
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
