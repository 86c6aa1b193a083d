// Text of the scoreboard page in English and Thai.
//
// pickLanguage() chooses the language: a choice saved by the page's switch
// first, then the first of the browser's languages (navigator.languages)
// that the page has, then English.

export const LANGUAGES = ["en", "th"];
export const DEFAULT_LANGUAGE = "en";

const en = {
  "page.title": "Live scores",
  "page.skip": "Skip to the matches",
  "page.language": "Language",
  "page.footer": "Updated live by livegate over Server-Sent Events.",
  "board.heading": "Matches by competition",
  "board.empty": "No matches yet. Waiting for the feed…",
  "state.connecting": "Connecting…",
  "state.live": "Live",
  "state.reconnecting": "Reconnecting…",
  "state.resynchronising": "Resynchronising…",
  "state.paused": "Paused while the page is hidden",
  "state.closed": "Disconnected",
  "version": "Version {version}",
  "version.short": "v{version}",
  "match.back": "All matches",
  "match.missing": "This match is not on the feed.",
  "match.loading": "Waiting for this match…",
  "match.label": "{home} {homeScore}–{awayScore} {away}, {status}",
  "match.halfTime": "Half-time {home}–{away}",
  "match.penalties": "Penalties {home}–{away}",
  "match.kickoff": "Kick-off {time}",
  "match.home": "Home",
  "match.away": "Away",
  "goal.announcement": "Goal! {home} {homeScore}–{awayScore} {away}",
  "timeline.heading": "Match events",
  "timeline.empty": "No events yet.",
  "lineups.heading": "Lineups",
  "lineups.empty": "Not announced yet.",
  "lineups.substitutes": "Substitutes",
  "statistics.heading": "Statistics",
  "statistics.empty": "No statistics yet.",
  "status.SCHEDULED": "Not started",
  "status.IN_PLAY": "Live",
  "status.PAUSED": "Half-time",
  "status.EXTRA_TIME": "Extra time",
  "status.PENALTY_SHOOTOUT": "Penalty shoot-out",
  "status.FINISHED": "Full-time",
  "status.SUSPENDED": "Suspended",
  "status.POSTPONED": "Postponed",
  "status.CANCELLED": "Cancelled",
  "status.ABANDONED": "Abandoned",
  "status.AWARDED": "Result awarded",
  "status.short.PAUSED": "HT",
  "status.short.FINISHED": "FT",
  "status.short.SCHEDULED": "–",
  "status.short.PENALTY_SHOOTOUT": "Pens",
  "event.goal": "Goal",
  "event.goal.penalty": "Penalty goal",
  "event.goal.own_goal": "Own goal",
  "event.missed_penalty": "Missed penalty",
  "event.yellow_card": "Yellow card",
  "event.second_yellow_card": "Second yellow card",
  "event.red_card": "Red card",
  "event.substitution": "Substitution",
  "event.shootout_kick.scored": "Penalty scored",
  "event.shootout_kick.missed": "Penalty missed",
  "event.substitution.players": "{player} replaces {player_out}",
  "event.assist": "assist: {assist}",
  "statistic.possession": "Possession (%)",
  "statistic.shots": "Shots",
  "statistic.shots_on_target": "Shots on target",
  "statistic.corners": "Corners",
  "statistic.fouls": "Fouls",
  "statistic.offsides": "Offsides",
  "statistic.saves": "Saves",
  "statistic.yellow_cards": "Yellow cards",
  "statistic.red_cards": "Red cards",
};

const th = {
  "page.title": "ผลบอลสด",
  "page.skip": "ข้ามไปยังรายการแข่งขัน",
  "page.language": "ภาษา",
  "page.footer": "อัปเดตสดโดย livegate ผ่าน Server-Sent Events",
  "board.heading": "การแข่งขันแยกตามรายการ",
  "board.empty": "ยังไม่มีการแข่งขัน กำลังรอข้อมูล…",
  "state.connecting": "กำลังเชื่อมต่อ…",
  "state.live": "สด",
  "state.reconnecting": "กำลังเชื่อมต่อใหม่…",
  "state.resynchronising": "กำลังซิงก์ข้อมูลใหม่…",
  "state.paused": "หยุดชั่วคราวขณะซ่อนหน้านี้",
  "state.closed": "ขาดการเชื่อมต่อ",
  "version": "เวอร์ชัน {version}",
  "version.short": "v{version}",
  "match.back": "การแข่งขันทั้งหมด",
  "match.missing": "ไม่มีการแข่งขันนี้ในข้อมูลสด",
  "match.loading": "กำลังรอข้อมูลการแข่งขันนี้…",
  "match.label": "{home} {homeScore}–{awayScore} {away}, {status}",
  "match.halfTime": "ครึ่งแรก {home}–{away}",
  "match.penalties": "ดวลจุดโทษ {home}–{away}",
  "match.kickoff": "เริ่มเตะ {time}",
  "match.home": "เจ้าบ้าน",
  "match.away": "ทีมเยือน",
  "goal.announcement": "ประตู! {home} {homeScore}–{awayScore} {away}",
  "timeline.heading": "เหตุการณ์ในเกม",
  "timeline.empty": "ยังไม่มีเหตุการณ์",
  "lineups.heading": "รายชื่อผู้เล่น",
  "lineups.empty": "ยังไม่ประกาศรายชื่อ",
  "lineups.substitutes": "ตัวสำรอง",
  "statistics.heading": "สถิติ",
  "statistics.empty": "ยังไม่มีสถิติ",
  "status.SCHEDULED": "ยังไม่เริ่ม",
  "status.IN_PLAY": "กำลังแข่งขัน",
  "status.PAUSED": "พักครึ่ง",
  "status.EXTRA_TIME": "ต่อเวลาพิเศษ",
  "status.PENALTY_SHOOTOUT": "ดวลจุดโทษ",
  "status.FINISHED": "จบการแข่งขัน",
  "status.SUSPENDED": "หยุดการแข่งขันชั่วคราว",
  "status.POSTPONED": "เลื่อนการแข่งขัน",
  "status.CANCELLED": "ยกเลิกการแข่งขัน",
  "status.ABANDONED": "ยุติการแข่งขัน",
  "status.AWARDED": "ตัดสินผลนอกสนาม",
  "status.short.PAUSED": "พักครึ่ง",
  "status.short.FINISHED": "จบเกม",
  "status.short.SCHEDULED": "–",
  "status.short.PENALTY_SHOOTOUT": "จุดโทษ",
  "event.goal": "ประตู",
  "event.goal.penalty": "ยิงจุดโทษเข้า",
  "event.goal.own_goal": "ทำเข้าประตูตัวเอง",
  "event.missed_penalty": "ยิงจุดโทษพลาด",
  "event.yellow_card": "ใบเหลือง",
  "event.second_yellow_card": "ใบเหลืองใบที่สอง",
  "event.red_card": "ใบแดง",
  "event.substitution": "เปลี่ยนตัว",
  "event.shootout_kick.scored": "ดวลจุดโทษเข้า",
  "event.shootout_kick.missed": "ดวลจุดโทษพลาด",
  "event.substitution.players": "{player} ลงแทน {player_out}",
  "event.assist": "แอสซิสต์: {assist}",
  "statistic.possession": "ครองบอล (%)",
  "statistic.shots": "ยิง",
  "statistic.shots_on_target": "ยิงเข้ากรอบ",
  "statistic.corners": "เตะมุม",
  "statistic.fouls": "ฟาวล์",
  "statistic.offsides": "ล้ำหน้า",
  "statistic.saves": "เซฟ",
  "statistic.yellow_cards": "ใบเหลือง",
  "statistic.red_cards": "ใบแดง",
};

const MESSAGES = { en, th };

/** Locale for Intl formatting, per language. */
export const LOCALES = { en: "en-GB", th: "th-TH" };

/** Returns the language to show: `saved` if valid, else the first match in `preferred`, else English. */
export function pickLanguage(preferred, saved) {
  if (LANGUAGES.includes(saved)) {
    return saved;
  }
  for (const tag of preferred || []) {
    const primary = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(primary)) {
      return primary;
    }
  }
  return DEFAULT_LANGUAGE;
}

/**
 * Return t(key, params) for `language`: the text of `key` with each {name}
 * replaced by params[name]. A key missing in the language falls back to
 * English, and a key missing in both to `fallback` (or the key itself).
 */
export function translator(language) {
  const messages = MESSAGES[language] || MESSAGES[DEFAULT_LANGUAGE];
  return function t(key, params = {}, fallback = undefined) {
    const template = messages[key] ?? MESSAGES[DEFAULT_LANGUAGE][key] ?? fallback ?? key;
    return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  };
}

/** Returns whether `key` has an English text, which every language falls back to. */
export function hasMessage(key) {
  return key in MESSAGES[DEFAULT_LANGUAGE];
}
