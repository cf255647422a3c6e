// The chat page's lines (rich relay): line ids, quotes, edits, deletions, reactions, pictures.
// Stranger text, emoji included, only ever goes through textContent.
"use strict";

// log: the element lines go in; hooks: what the page lets the user do
// ({canAct(), emoji(), reply(ref), edit(ref), remove(ref), react(ref, emoji, add), report()}).
window.StrangerLines = (log, hooks) => {
  const LINE_ID = /^[us][1-9][0-9]{0,8}$/;
  const IMAGE_URL = /^\/image\/[A-Za-z0-9_-]{20,64}$/;
  const QUOTE = 80; // characters of a quoted line
  const byRef = new Map(); // line id -> {entry, div}

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
        chip.disabled = !hooks.canAct();
        chip.addEventListener("click", () => hooks.react(rich.ref, emoji, !who.includes("You")));
        row.append(chip);
      }
      div.append(row);
    }
    if (hooks.canAct() && !rich.deleted) div.append(actions(kind, rich));
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
    button("Reply", "act reply", () => hooks.reply(rich.ref));
    for (const emoji of hooks.emoji()) {
      const b = button(emoji, "act react", () => hooks.react(rich.ref, emoji, true));
      b.dataset.emoji = emoji;
      b.title = "React " + emoji;
    }
    if (kind === "you") {
      button("Edit", "act edit", () => hooks.edit(rich.ref));
      button("Delete", "act delete", () => hooks.remove(rich.ref));
    }
    return bar;
  }

  function picture(image) {
    const box = document.createElement("span");
    box.className = "picture";
    const img = document.createElement("img");
    img.src = image.url;
    img.alt = image.mine ? "Your picture" : "A picture from the stranger (click to show)";
    img.className = image.mine ? "" : "blurred";
    img.width = Math.min(320, image.width);
    img.addEventListener("click", () => img.classList.toggle("blurred"));
    box.append(img);
    const flag = document.createElement("button");
    flag.type = "button";
    flag.className = "report picture-report";
    flag.textContent = "Report";
    flag.addEventListener("click", hooks.report);
    if (!image.mine) box.append(flag);
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
      rich.image = { url: im.url, width: Number.isInteger(im.width) ? im.width : 320, mine: im.mine === true };
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
  return { byRef, edited, paint, quoteOf, reacted, repaintAll, retracted, richOf, savedRich, show };
};
