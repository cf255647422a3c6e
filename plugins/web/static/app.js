// The chat page: an Omegle-protocol client. Stranger text only ever goes through textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const log = $("log"), typing = $("typing"), message = $("message");
  const stopButton = $("stop"), nextButton = $("next"), sendButton = $("send"), reportButton = $("report");
  const RANDID = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
  const STORE = "stranger-bridge-chat"; // this tab's chat, so a reload takes it up again
  const KEPT = 500; // lines of the transcript kept for a reload

  let clientId = null;
  let seen = 0; // events of this chat shown so far: every poll acknowledges them (`ack`)
  let generation = 0; // bumps on every start/stop so stale polls drop their answers
  let state = "idle"; // idle | searching | chatting
  let spy = false;
  let confirmStop = false;
  let typingSent = false;
  let typingTimer = null;
  let endShown = false;
  let transcript = []; // [kind, text, who, rich] of every line shown in this chat
  // Rich relay: lines with an id ("u1" ours, "s1" the stranger's) can be edited, deleted,
  // reacted to and answered. rich = {ref, reply, quote, edited, deleted, reactions: {emoji: [who]}}
  const LINE_ID = /^[us][1-9][0-9]{0,8}$/;
  const IMAGE_URL = /^\/image\/[A-Za-z0-9_-]{20,64}$/;
  const QUOTE = 80; // characters of a quoted line
  let emojiSet = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
  let images = false; // the server takes pictures from this page
  let own = 0; // our lines named so far
  let replyTo = null; // the line the next message answers
  let editing = null; // the line the composer edits
  const byRef = new Map(); // line id -> {entry, div}

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function line(kind, text, who, rich) {
    const entry = [kind, text, who || null, rich || null];
    transcript.push(entry);
    if (transcript.length > KEPT) {
      for (const old of transcript.slice(0, transcript.length - KEPT)) if (old[3]) byRef.delete(old[3].ref);
      transcript = transcript.slice(-KEPT);
    }
    show(entry);
  }

  function quoteOf(rich) {
    const target = byRef.get(rich.reply);
    if (target) {
      const t = target.entry;
      return t[3].deleted ? "message deleted" : (t[2] ? t[2] + ": " : "") + clip(t[1]);
    }
    return typeof rich.quote === "string" ? clip(rich.quote) : "an earlier message";
  }
  const clip = (text) => (text.length > QUOTE ? text.slice(0, QUOTE - 1) + "…" : text);

  function show(entry) {
    const [kind, text, who, rich] = entry;
    const div = document.createElement("div");
    div.className = "line " + kind;
    if (who) {
      const name = document.createElement("strong");
      name.className = "who";
      name.textContent = who + ": ";
      div.append(name);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    div.append(body);
    if (rich) {
      div.dataset.ref = rich.ref;
      byRef.set(rich.ref, { entry, div });
      paint(entry, div);
    }
    log.append(div);
    log.scrollTop = log.scrollHeight;
  }

  // (Re)draws a rich line from its entry: quote, text or "message deleted", edited mark, picture,
  // reactions and the actions this page may take on it. All stranger text goes in as text nodes.
  function paint(entry, div) {
    const [kind, text, , rich] = entry;
    for (const old of div.querySelectorAll(".quote, .edited, .reactions, .actions, .picture")) old.remove();
    const body = div.querySelector(".text");
    div.classList.toggle("deleted", rich.deleted === true);
    body.textContent = rich.deleted ? "message deleted" : text;
    if (rich.reply && !rich.deleted) {
      const quote = document.createElement("span");
      quote.className = "quote";
      quote.textContent = quoteOf(rich);
      div.insertBefore(quote, body);
    }
    if (rich.edited && !rich.deleted) {
      const mark = document.createElement("small");
      mark.className = "edited";
      mark.textContent = " (edited)";
      body.after(mark);
    }
    if (rich.image && !rich.deleted) div.append(picture(rich.image));
    const counts = Object.entries(rich.reactions || {}).filter(([, who]) => who.length);
    if (counts.length && !rich.deleted) {
      const row = document.createElement("span");
      row.className = "reactions";
      for (const [emoji, who] of counts) {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.className = "chip" + (who.includes("You") ? " mine" : "");
        chip.dataset.emoji = emoji;
        chip.textContent = emoji + " " + who.length;
        chip.disabled = spy || state !== "chatting";
        chip.addEventListener("click", () => react(rich.ref, emoji, !who.includes("You")));
        row.append(chip);
      }
      div.append(row);
    }
    if (!spy && state === "chatting" && !rich.deleted) div.append(actions(kind, rich));
  }

  function actions(kind, rich) {
    const bar = document.createElement("span");
    bar.className = "actions";
    const button = (label, cls, fn) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = cls;
      b.textContent = label;
      b.addEventListener("click", fn);
      bar.append(b);
      return b;
    };
    button("Reply", "act reply", () => startReply(rich.ref));
    for (const emoji of emojiSet) {
      const b = button(emoji, "act react", () => react(rich.ref, emoji, true));
      b.dataset.emoji = emoji;
      b.title = "React " + emoji;
    }
    if (kind === "you") {
      button("Edit", "act edit", () => startEdit(rich.ref));
      button("Delete", "act delete", () => retract(rich.ref));
    }
    return bar;
  }

  function picture(image) {
    const box = document.createElement("span");
    box.className = "picture";
    const img = document.createElement("img");
    img.src = image.url;
    img.alt = "A picture from the stranger (click to show)";
    img.className = "blurred";
    img.width = Math.min(320, image.width);
    img.addEventListener("click", () => img.classList.toggle("blurred"));
    box.append(img);
    const flag = document.createElement("button");
    flag.type = "button";
    flag.className = "report picture-report";
    flag.textContent = "Report";
    flag.addEventListener("click", report);
    box.append(flag);
    return box;
  }

  function repaint(ref) {
    const found = byRef.get(ref);
    if (found) paint(found.entry, found.div);
    for (const other of byRef.values()) if (other.entry[3].reply === ref) paint(other.entry, other.div);
  }

  function repaintAll() {
    for (const found of byRef.values()) paint(found.entry, found.div);
  }

  function richOf(meta) {
    // the extension's message metadata, checked: ids must look like ours, images be our own URLs
    if (!meta || typeof meta !== "object" || typeof meta.ref !== "string" || !LINE_ID.test(meta.ref)) return null;
    const rich = { ref: meta.ref, reactions: {} };
    if (typeof meta.reply === "string" && LINE_ID.test(meta.reply)) {
      rich.reply = meta.reply;
      if (typeof meta.quote === "string") rich.quote = meta.quote;
    }
    const im = meta.image;
    if (im && typeof im === "object" && typeof im.url === "string" && IMAGE_URL.test(im.url)) {
      rich.image = { url: im.url, width: Number.isInteger(im.width) ? im.width : 320 };
    }
    return rich;
  }

  function edited(ref, text) {
    const found = byRef.get(ref);
    if (!found || typeof text !== "string" || found.entry[3].deleted) return;
    found.entry[1] = text;
    found.entry[3].edited = true;
    repaint(ref);
  }

  function retracted(ref) {
    const found = byRef.get(ref);
    if (!found) return;
    found.entry[1] = ""; // gone from the page and from this tab's storage
    found.entry[3].deleted = true;
    delete found.entry[3].image;
    for (const other of byRef.values()) if (other.entry[3].reply === ref) delete other.entry[3].quote;
    repaint(ref);
  }

  function reacted(ref, emoji, add, who) {
    const found = byRef.get(ref);
    if (!found || typeof emoji !== "string" || !emoji || emoji.length > 32) return;
    const reactions = found.entry[3].reactions;
    const list = (reactions[emoji] || []).filter((w) => w !== who);
    if (add) list.push(who);
    if (list.length) reactions[emoji] = list;
    else delete reactions[emoji];
    paint(found.entry, found.div);
  }
  const notice = (text) => line("notice", text);

  function setTyping(text) {
    typing.textContent = text || "";
  }

  function save() {
    try {
      if (clientId) sessionStorage.setItem(STORE, JSON.stringify({ clientId, seen, spy, state, transcript, own, images }));
      else sessionStorage.removeItem(STORE);
    } catch (err) {
      // storage may be full or off: a reload then simply starts afresh
    }
  }

  function resume() {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
    } catch (err) {
      saved = null;
    }
    if (!saved || typeof saved.clientId !== "string" || !Number.isInteger(saved.seen) || !Array.isArray(saved.transcript)) {
      return false;
    }
    spy = saved.spy === true;
    own = Number.isInteger(saved.own) ? saved.own : 0;
    images = saved.images === true;
    log.replaceChildren();
    transcript = [];
    byRef.clear();
    for (const entry of saved.transcript) {
      if (Array.isArray(entry) && typeof entry[0] === "string" && typeof entry[1] === "string") {
        line(entry[0], entry[1], typeof entry[2] === "string" ? entry[2] : null, savedRich(entry[3]));
      }
    }
    clientId = saved.clientId;
    seen = saved.seen;
    setState(saved.state === "chatting" ? "chatting" : "searching");
    poll(++generation);
    return true;
  }

  function savedRich(saved) {
    const rich = richOf(saved);
    if (!rich) return null;
    rich.edited = saved.edited === true;
    rich.deleted = saved.deleted === true;
    if (saved.reactions && typeof saved.reactions === "object") {
      for (const [emoji, who] of Object.entries(saved.reactions)) {
        if (Array.isArray(who)) rich.reactions[emoji] = who.filter((w) => typeof w === "string");
      }
    }
    return rich;
  }

  function setState(next) {
    state = next;
    confirmStop = false;
    const active = state !== "idle";
    stopButton.textContent = active ? "Stop" : "Start";
    stopButton.classList.toggle("danger", active);
    nextButton.disabled = !active;
    reportButton.disabled = state !== "chatting";
    const canWrite = state === "chatting" && !spy;
    message.disabled = !canWrite;
    sendButton.disabled = !canWrite;
    for (const el of document.querySelectorAll("#setup input")) el.disabled = active;
    document.body.classList.toggle("active", active);
    if (!active) setTyping("");
    if (!canWrite) cancelCompose();
    $("attach").hidden = !(canWrite && images);
    if (canWrite) message.focus();
    repaintAll(); // the actions on each line follow the state
  }

  function setCount(n) {
    if (Number.isInteger(n)) $("count").textContent = String(n);
  }

  function form(params) {
    return { method: "POST", body: new URLSearchParams(params), cache: "no-store" };
  }

  function randid() {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    return Array.from(bytes, (b) => RANDID[b % RANDID.length]).join("");
  }

  async function start() {
    const mine = ++generation;
    const query = new URLSearchParams({ firstevents: "1", randid: randid(), ack: "0", rich: "1" });
    const lang = (navigator.language || "en").slice(0, 2).toLowerCase();
    query.set("lang", /^[a-z]{2}$/.test(lang) ? lang : "en");
    const question = $("question").value.trim();
    const interests = $("interests").value.split(",").map((s) => s.trim()).filter(Boolean);
    spy = question !== "";
    if (spy) query.set("ask", question);
    else if ($("answer").checked) query.set("wantsspy", "1");
    else if (interests.length) query.set("topics", JSON.stringify(interests));
    log.replaceChildren();
    transcript = [];
    byRef.clear();
    own = 0;
    endShown = false;
    clientId = null;
    setState("searching");
    notice("Connecting to the server...");
    let data;
    try {
      const response = await fetch("/start?" + query.toString(), { cache: "no-store" });
      if (!response.ok) {
        const why = (await response.text()).replace(/^fail:?\s*/, "");
        throw new Error(response.status === 429 ? "too many chats from your address" : why || "HTTP " + response.status);
      }
      data = await response.json();
    } catch (err) {
      if (mine === generation) {
        notice("Could not start a chat: " + err.message + ".");
        setState("idle");
      }
      return;
    }
    if (mine !== generation) {
      fetch("/disconnect", form({ id: data.clientID }));
      return;
    }
    clientId = data.clientID;
    seen = Number.isInteger(data.next) ? data.next : 0;
    if (data.rich && typeof data.rich === "object") {
      images = data.rich.images === true;
      if (Array.isArray(data.rich.emoji) && data.rich.emoji.every((e) => typeof e === "string")) emojiSet = data.rich.emoji;
    }
    handle(data.events || []);
    save();
    poll(mine);
  }

  async function poll(mine) {
    let failures = 0;
    while (mine === generation && clientId && state !== "idle") {
      let events;
      try {
        const response = await fetch("/events", form({ id: clientId, ack: String(seen) }));
        if (response.status === 400) {
          if (mine === generation) ended("The server ended this chat.");
          return;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        events = await response.json();
        failures = 0;
      } catch (err) {
        if (++failures > 10) {
          if (mine === generation) ended("Lost the connection to the server.");
          return;
        }
        await sleep(Math.min(5000, 500 * failures));
        continue;
      }
      if (mine !== generation) return;
      // {seq, events}: events from sequence number seq on; those before `seen` were shown already
      // (an answer the network lost is answered again, so nothing is lost and nothing shown twice)
      if (events && Array.isArray(events.events) && Number.isInteger(events.seq)) {
        const fresh = events.events.slice(Math.max(0, seen - events.seq));
        seen = Math.max(seen, events.seq + events.events.length);
        handle(fresh);
        save();
      }
    }
  }

  function ended(text) {
    if (text && !endShown) notice(text);
    endShown = true;
    clientId = null;
    typingSent = false;
    setState("idle");
    save();
  }

  function handle(events) {
    let explained = false; // a notice already said why the chat ended
    for (const ev of events) {
      if (!Array.isArray(ev) || typeof ev[0] !== "string") continue;
      const [name, a, b] = ev;
      switch (name) {
        case "waiting":
          notice("Looking for someone you can chat with...");
          break;
        case "connected":
          setState("chatting");
          refreshCount();
          notice(spy ? "You're now watching two strangers discuss your question!" : "You're now chatting with a random stranger. Say hi!");
          break;
        case "commonLikes":
          if (Array.isArray(a) && a.length) notice("You both like " + a.map(String).join(", ") + ".");
          break;
        case "question":
          notice((spy ? "Your question: " : "Question to discuss: ") + String(a));
          break;
        case "gotMessage":
          if (state === "searching") setState("chatting");
          setTyping("");
          line("stranger", String(a), "Stranger", richOf(b));
          break;
        case "spyMessage":
          setTyping("");
          line("stranger", String(b), String(a), richOf(ev[3]));
          break;
        case "edit":
          edited(String(a), b);
          break;
        case "retract":
          retracted(String(a));
          break;
        case "react":
          reacted(String(a), b, ev[3] === true, "Stranger");
          break;
        case "typing":
          if (state === "searching") setState("chatting");
          setTyping("Stranger is typing...");
          break;
        case "spyTyping":
          setTyping(String(a) + " is typing...");
          break;
        case "stoppedTyping":
        case "spyStoppedTyping":
          setTyping("");
          break;
        case "serverMessage":
          notice(String(a));
          explained = true;
          break;
        case "error":
          if (!explained) notice("Error: " + String(a));
          explained = true;
          break;
        case "strangerDisconnected":
          ended(explained ? null : "Stranger has disconnected.");
          break;
        case "spyDisconnected":
          ended(String(a) + " has disconnected.");
          break;
        case "statusInfo":
          if (a && typeof a === "object") setCount(a.count);
          break;
        case "count":
          setCount(a);
          break;
        default:
          break; // identDigests and the like
      }
    }
  }

  function stop() {
    const id = clientId;
    generation++;
    if (id) fetch("/disconnect", form({ id }));
    if (state !== "idle") notice("You have disconnected.");
    ended(null);
  }

  function onStopButton() {
    if (state === "idle") {
      start();
    } else if (state === "chatting" && !confirmStop) {
      confirmStop = true; // one more press really stops, as on Omegle
      stopButton.textContent = "Really?";
    } else {
      stop();
    }
  }

  // Report: the server ends the chat as a report; the poll then brings the core's own words on
  // what follows (so the page never promises more than the bridge does).
  function report() {
    if (state !== "chatting" || !clientId) return;
    reportButton.disabled = true;
    fetch("/report", form({ id: clientId }));
  }

  function next() {
    stop();
    start();
  }

  function stoppedTyping() {
    clearTimeout(typingTimer);
    if (typingSent && clientId) fetch("/stoppedtyping", form({ id: clientId }));
    typingSent = false;
  }

  message.addEventListener("input", () => {
    if (state !== "chatting" || !clientId) return;
    if (!message.value.trim()) {
      stoppedTyping();
      return;
    }
    if (!typingSent) {
      typingSent = true;
      fetch("/typing", form({ id: clientId }));
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stoppedTyping, 5000);
  });

  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });

  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = message.value.trim();
    if (!text || state !== "chatting" || !clientId) return;
    clearTimeout(typingTimer);
    typingSent = false; // a message implies the user stopped typing
    message.value = "";
    if (editing) {
      const ref = editing;
      cancelCompose();
      await saveEdit(ref, text);
      return;
    }
    const rich = { ref: "u" + ++own, reactions: {} };
    const fields = { id: clientId, msg: text, ref: rich.ref };
    if (replyTo && byRef.has(replyTo)) {
      rich.reply = replyTo;
      fields.reply = replyTo;
    }
    cancelCompose();
    line("you", text, "You", rich);
    save();
    try {
      const response = await fetch("/send", form(fields));
      if (!response.ok) notice("Your message was not sent.");
    } catch (err) {
      notice("Your message was not sent.");
    }
  });

  // ---- the rich relay: reply, edit, delete, react --------------------------------------------

  function startReply(ref) {
    const found = byRef.get(ref);
    if (!found || state !== "chatting") return;
    editing = null;
    replyTo = ref;
    $("compose-what").textContent = "Replying to " + quoteOf({ reply: ref });
    $("compose").hidden = false;
    $("send").textContent = "Send";
    message.focus();
  }

  function startEdit(ref) {
    const found = byRef.get(ref);
    if (!found || state !== "chatting" || found.entry[3].deleted) return;
    replyTo = null;
    editing = ref;
    $("compose-what").textContent = "Editing your message";
    $("compose").hidden = false;
    $("send").textContent = "Save";
    message.value = found.entry[1];
    message.focus();
  }

  function cancelCompose() {
    replyTo = editing = null;
    $("compose").hidden = true;
    $("send").textContent = "Send";
  }

  async function ask(path, fields, failure) {
    if (!clientId) return false;
    try {
      const response = await fetch(path, form({ id: clientId, ...fields }));
      if (response.ok) return true;
      notice(failure + (response.status === 429 ? " (too many at once)." : "."));
    } catch (err) {
      notice(failure + ".");
    }
    return false;
  }

  async function saveEdit(ref, text) {
    const found = byRef.get(ref);
    if (!found || found.entry[1] === text) return;
    if (await ask("/edit", { ref, msg: text }, "Your edit was not sent")) {
      edited(ref, text);
      save();
    }
  }

  async function retract(ref) {
    if (await ask("/delete", { ref }, "Your message was not deleted")) {
      retracted(ref);
      save();
    }
  }

  async function react(ref, emoji, add) {
    if (await ask("/react", { ref, emoji, add: add ? "1" : "0" }, "Your reaction was not sent")) {
      reacted(ref, emoji, add, "You");
      save();
    }
  }

  $("compose-cancel").addEventListener("click", () => {
    if (editing) message.value = "";
    cancelCompose();
    message.focus();
  });

  $("setup").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state === "idle") start();
  });
  for (const input of document.querySelectorAll("#setup input:not([type=checkbox])")) {
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        if (state === "idle") start();
      }
    });
  }
  stopButton.addEventListener("click", onStopButton);
  nextButton.addEventListener("click", next);
  reportButton.addEventListener("click", report);

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    if (state === "idle") start();
    else stop();
  });

  // Closing the tab leaves the chat; a reload comes back within the server's grace period and
  // takes the chat up again from this tab's storage (so `grace`: leave unless the id is used again).
  window.addEventListener("pagehide", () => {
    if (clientId) {
      save();
      navigator.sendBeacon("/disconnect", new URLSearchParams({ id: clientId, grace: "1" }));
    }
  });

  async function refreshCount() {
    try {
      const response = await fetch("/status?nocache=" + Math.random(), { cache: "no-store" });
      if (response.ok) setCount((await response.json()).count);
    } catch (err) {
      // the count is decoration; the next refresh tries again
    }
  }
  refreshCount();
  setInterval(refreshCount, 30000);
  if (!resume()) setState("idle");
})();
