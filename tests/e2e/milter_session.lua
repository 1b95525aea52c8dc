-- tests/e2e/milter_session.lua - one milter session driven by miltertest, for
-- tests/e2e/lib_milter.sh (e2e_miltertest). Parameters come from the environment:
--   MT_SOCKET     the milter's socket (inet:PORT@127.0.0.1)
--   MT_CLIENT_IP  the SMTP client's address given at connect
--   MT_AUTH       {auth_authen} at MAIL ("" for an unauthenticated sender)
--   MT_RCPTS      space-separated recipients, one RCPT each
-- Prints "reply NAME" per recipient (continue, replycode, tempfail, reject, ...).
-- miltertest swallows Lua errors silently, so every step runs under pcall and a
-- failure is printed as "error ..." (the shell side then sees a missing reply).

local names = {}
names[SMFIR_CONTINUE] = "continue"
names[SMFIR_REPLYCODE] = "replycode"
names[SMFIR_TEMPFAIL] = "tempfail"
names[SMFIR_REJECT] = "reject"
names[SMFIR_ACCEPT] = "accept"
names[SMFIR_DISCARD] = "discard"

local function name(r)
    return names[r] or ("code-" .. tostring(r))
end

local ok, err = pcall(function()
    local conn = mt.connect(os.getenv("MT_SOCKET"), 50, 0.1)
    if conn == nil then error("mt.connect failed") end
    if mt.conninfo(conn, "client.e2e.test", os.getenv("MT_CLIENT_IP")) ~= nil then
        error("mt.conninfo failed")
    end
    if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect: " .. name(mt.getreply(conn))) end
    if mt.helo(conn, "client.e2e.test") ~= nil then error("mt.helo failed") end
    local auth = os.getenv("MT_AUTH") or ""
    mt.macro(conn, SMFIC_MAIL, "i", "E2EQID", "{auth_authen}", auth)
    if mt.mailfrom(conn, "<sender@client.e2e.test>") ~= nil then error("mt.mailfrom failed") end
    if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail: " .. name(mt.getreply(conn))) end
    for rcpt in string.gmatch(os.getenv("MT_RCPTS") or "", "%S+") do
        if mt.rcptto(conn, "<" .. rcpt .. ">") ~= nil then error("mt.rcptto failed") end
        mt.echo("reply " .. name(mt.getreply(conn)))
    end
    mt.disconnect(conn)
end)
if not ok then
    mt.echo("error " .. tostring(err))
end
