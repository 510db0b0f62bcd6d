-- Response rewrites for Baton's REST face. Envoy runs this filter after the gRPC-JSON
-- transcoder on the way out (it is listed before it), so it sees the JSON response the
-- transcoder made, or the plain-text error Envoy made itself. Native gRPC responses pass
-- untouched: their status and metadata belong to the gRPC client.

-- gRPC code for the HTTP status of an error Envoy makes itself, so that those errors
-- read like the server's (the reverse of the transcoder's code-to-status mapping).
local GRPC_CODE = {
  [400] = 3, -- INVALID_ARGUMENT: malformed JSON, unknown field or query parameter
  [401] = 16,
  [403] = 7,
  [404] = 5, -- NOT_FOUND: no method for this path
  [405] = 12,
  [409] = 6,
  [429] = 8,
  [500] = 13,
  [501] = 12,
  [502] = 14,
  [503] = 14, -- UNAVAILABLE: the API server is down or restarting
  [504] = 4,
}

-- The error body of a request over the size limit (baton_server.limits.MAX_REQUEST_BYTES,
-- filled in when the configuration is rendered), in the shape of the server's errors.
local TOO_LARGE = '{"code":3,"message":"invalid request: the request is larger than the '
  .. '{{max_request}} limit of a request","details":[{"@type":'
  .. '"type.googleapis.com/google.rpc.ErrorInfo","reason":"REQUEST_TOO_LARGE",'
  .. '"domain":"baton","metadata":{}}]}'

-- The length of the well-formed UTF-8 sequence at text[i], or nil (RFC 3629: no
-- overlong forms, no surrogates, nothing above U+10FFFF).
local function utf8_length(text, i)
  local first = text:byte(i)
  local length, low, high = 1, 0x80, 0xBF
  if first < 0x80 then
    return 1
  elseif first >= 0xC2 and first <= 0xDF then
    length = 2
  elseif first >= 0xE0 and first <= 0xEF then
    length = 3
    if first == 0xE0 then low = 0xA0 elseif first == 0xED then high = 0x9F end
  elseif first >= 0xF0 and first <= 0xF4 then
    length = 4
    if first == 0xF0 then low = 0x90 elseif first == 0xF4 then high = 0x8F end
  else
    return nil
  end
  for k = i + 1, i + length - 1 do
    local byte = text:byte(k)
    if byte == nil or byte < low or byte > high then
      return nil
    end
    low, high = 0x80, 0xBF
  end
  return length
end

-- Envoy's messages may quote the request, bytes that are not UTF-8 included; JSON must
-- be UTF-8, so each such byte becomes U+FFFD.
local function valid_utf8(text)
  local parts, i = {}, 1
  while i <= #text do
    local length = utf8_length(text, i)
    if length == nil then
      parts[#parts + 1] = "\239\191\189"
      i = i + 1
    else
      parts[#parts + 1] = text:sub(i, i + length - 1)
      i = i + length
    end
  end
  return table.concat(parts)
end

local function json_string(text)
  local escaped = valid_utf8(text):gsub('[%c"\\]', function(char)
    if char == '"' then
      return '\\"'
    elseif char == "\\" then
      return "\\\\"
    elseif char == "\n" then
      return "\\n"
    end
    return string.format("\\u%04x", char:byte())
  end)
  return '"' .. escaped .. '"'
end

local function whole_body(handle)
  local body = handle:body()
  if body == nil then
    return nil, nil
  end
  return body, body:getBytes(0, body:length())
end

-- The server names a field (`x-baton-unwrap: steps`) when the REST contract wants that
-- field's value as the whole response (a bare JSON array). The field is the only one of
-- its message, so the transcoder's compact output is exactly {"<field>":<value>}.
local function unwrap(handle, field)
  local body, text = whole_body(handle)
  if body == nil then
    return
  end
  local prefix = '{"' .. field .. '":'
  if text:sub(1, #prefix) == prefix and text:sub(-1) == "}" then
    body:setBytes(text:sub(#prefix + 1, -2))
  else
    handle:logWarn("cannot unwrap field " .. field .. " of the response")
  end
end

-- Envoy's own errors are text/plain; give them the google.rpc.Status shape of the
-- server's errors, so every REST error body is JSON with `code` and `message`.
local function plain_error_to_json(handle, status)
  local body, text = whole_body(handle)
  if body == nil then
    return
  end
  if status == 413 then
    -- The transcoder's buffer overflowed: its message does not say what the limit is.
    body:setBytes(TOO_LARGE)
  else
    local message = text:gsub("%s+$", "")
    body:setBytes(
      '{"code":' .. (GRPC_CODE[status] or 2) .. ',"message":' .. json_string(message)
        .. ',"details":[]}'
    )
  end
  handle:headers():replace("content-type", "application/json")
end

-- A request over the size limit is a 413, whoever noticed: the server (reason
-- REQUEST_TOO_LARGE, a 400 from the transcoder), or gRPC itself for a message beyond what
-- the server reads at all (RESOURCE_EXHAUSTED, a 429 that is no rate limit).
local function too_large(handle, status)
  local body, text = whole_body(handle)
  if body == nil then
    return
  end
  if status == 400 and text:find('"reason":"REQUEST_TOO_LARGE"', 1, true) then
    handle:headers():replace(":status", "413")
  elseif status == 429 and text:find("Received message larger than max", 1, true) then
    handle:headers():replace(":status", "413")
    body:setBytes(TOO_LARGE)
  end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local content_type = headers:get("content-type") or ""
  if content_type:find("^application/grpc") then
    return
  end
  -- What is left of the gRPC response means nothing to an HTTP client.
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-accept-encoding")

  local status = tonumber(headers:get(":status"))
  -- The server's choice of success status (201, 202, or 503 for "not ready"), sent as
  -- initial metadata because gRPC has no such notion. Errors keep their mapped status.
  local wanted = headers:get("x-http-code")
  if wanted ~= nil then
    headers:remove("x-http-code")
    if status == 200 then
      headers:replace(":status", wanted)
    end
  end
  local field = headers:get("x-baton-unwrap")
  if field ~= nil then
    headers:remove("x-baton-unwrap")
    if status == 200 then
      unwrap(handle, field)
    end
  end
  if status ~= nil and status >= 400 and content_type:find("^text/plain") then
    plain_error_to_json(handle, status)
  elseif status == 400 or status == 429 then
    too_large(handle, status)
  end
end
