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
  let emojiSet = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
  let images = false; // the server takes pictures from this page
  let maxImage = 0; // bytes of a picture it takes
  const PICTURE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
  let own = 0; // our lines named so far
  let replyTo = null; // the line the next message answers
  let editing = null; // the line the composer edits

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const lines = window.StrangerLines(log, {
    canAct: () => !spy && state === "chatting",
    emoji: () => emojiSet,
    reply: (ref) => startReply(ref),
    edit: (ref) => startEdit(ref),
    remove: (ref) => retract(ref),
    react: (ref, emoji, add) => react(ref, emoji, add),
    report: () => report(),
  });
  const byRef = lines.byRef;

  function line(kind, text, who, rich) {
    const entry = [kind, text, who || null, rich || null];
    transcript.push(entry);
    if (transcript.length > KEPT) {
      for (const old of transcript.slice(0, transcript.length - KEPT)) if (old[3]) byRef.delete(old[3].ref);
      transcript = transcript.slice(-KEPT);
    }
    lines.show(entry);
  }

  const notice = (text) => line("notice", text);

  function setTyping(text) {
    typing.textContent = text || "";
  }

  function save() {
    try {
      if (clientId) sessionStorage.setItem(STORE, JSON.stringify({ clientId, seen, spy, state, transcript, own, images, maxImage }));
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
    maxImage = Number.isInteger(saved.maxImage) ? saved.maxImage : 0;
    log.replaceChildren();
    transcript = [];
    byRef.clear();
    for (const entry of saved.transcript) {
      if (Array.isArray(entry) && typeof entry[0] === "string" && typeof entry[1] === "string") {
        line(entry[0], entry[1], typeof entry[2] === "string" ? entry[2] : null, lines.savedRich(entry[3]));
      }
    }
    clientId = saved.clientId;
    seen = saved.seen;
    setState(saved.state === "chatting" ? "chatting" : "searching");
    poll(++generation);
    return true;
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
    lines.repaintAll(); // the actions on each line follow the state
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
      maxImage = Number.isInteger(data.rich.image_max_bytes) ? data.rich.image_max_bytes : 0;
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
          line("stranger", String(a), "Stranger", lines.richOf(b));
          break;
        case "spyMessage":
          setTyping("");
          line("stranger", String(b), String(a), lines.richOf(ev[3]));
          break;
        case "edit":
          lines.edited(String(a), b);
          break;
        case "retract":
          lines.retracted(String(a));
          break;
        case "react":
          lines.reacted(String(a), b, ev[3] === true, typeof ev[4] === "string" && ev[4] ? ev[4] : "Stranger");
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
    $("compose-what").textContent = "Replying to " + lines.quoteOf({ reply: ref });
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
      lines.edited(ref, text);
      save();
    }
  }

  async function retract(ref) {
    if (await ask("/delete", { ref }, "Your message was not deleted")) {
      lines.retracted(ref);
      save();
    }
  }

  async function react(ref, emoji, add) {
    if (await ask("/react", { ref, emoji, add: add ? "1" : "0" }, "Your reaction was not sent")) {
      lines.reacted(ref, emoji, add, "You");
      save();
    }
  }

  // A picture: checked here for kind and size (anything else is "not sent", as the server would
  // say), then uploaded; the server answers the re-encoded picture it relays, which is shown.
  async function sendPicture(file) {
    if (!file || state !== "chatting" || !clientId || !images) return;
    if (!PICTURE_TYPES.includes(file.type)) {
      notice("Not sent: only PNG, JPEG, GIF and WebP pictures can be sent.");
      return;
    }
    if (maxImage && file.size > maxImage) {
      notice("Not sent: the picture is larger than " + (maxImage / 1000000).toFixed(1) + " MB.");
      return;
    }
    const ref = "u" + ++own;
    try {
      const response = await fetch("/upload", {
        method: "POST", body: file, cache: "no-store",
        headers: { "Content-Type": file.type, "X-Client-ID": clientId, "X-Ref": ref },
      });
      if (!response.ok) {
        const why = (await response.text()).replace(/^fail:?\s*/, "");
        notice("Your picture was not sent" + (why && response.status === 415 ? ": " + why : "."));
        return;
      }
      const shown = await response.json();
      const rich = lines.richOf({ ref, image: { ...shown, mine: true } });
      if (rich) {
        line("you", "", "You", rich);
        save();
      }
    } catch (err) {
      notice("Your picture was not sent.");
    }
  }

  $("picture").addEventListener("change", () => {
    const input = $("picture");
    const file = input.files && input.files[0];
    input.value = "";
    sendPicture(file);
  });

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
    if (editing || replyTo) {
      // Esc first leaves an edit or a reply; pressed again it stops as usual
      if (editing) message.value = "";
      cancelCompose();
      return;
    }
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
