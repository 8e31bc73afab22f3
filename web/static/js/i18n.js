// Translations for the pages' scripts: the same catalogue as the pages (see web/i18n.py).
// _('Text with %(name)s', {name}) and ngettext('%(num)d mark', '%(num)d marks', n) as in the templates.
const node = document.getElementById('i18n');
const {messages = {}, plural = ['one', 'other']} = node ? JSON.parse(node.textContent) : {};
export const lang = document.documentElement.lang || 'en';
// Numbers, dates and lists in the page's language, with the digits 0-9 that the server's pages use too.
export const locale = new Intl.Locale(lang, {numberingSystem: 'latn'}).toString();
const rules = new Intl.PluralRules(lang);

const fill = (text, params) => text.replace(/%\((\w+)\)[sd]/g, (match, key) => (key in params ? params[key] : match));

export function _(text, params = {}) {
  const found = messages[text];
  return fill(typeof found === 'string' ? found : text, params);
}

export function ngettext(singular, plural_, n, params = {}) {
  const found = messages[singular];
  const values = {num: n.toLocaleString(locale), ...params};
  if (Array.isArray(found)) {
    const index = plural.indexOf(rules.select(n));
    return fill(found[index >= 0 ? index : found.length - 1], values);
  }
  return fill(n === 1 ? singular : plural_, values);
}
