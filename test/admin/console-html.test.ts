import { expect, test } from 'vitest';
import { escapeHtml, html, path, query } from '../../src/admin/console/html.js';

const HOSTILE = `<script>alert(1)</script><img src=x onerror="alert('x')"> \` & javascript:alert(1)`;

test('every interpolated value is escaped: no tag, attribute break-out or entity survives', () => {
  const page = html`<p title="${HOSTILE}">${HOSTILE}</p>`.text;
  expect(page).toBe(
    '<p title="&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt; &#96; &amp; javascript:alert(1)">' +
      '&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt; &#96; &amp; javascript:alert(1)</p>',
  );
  expect(escapeHtml('&amp;')).toBe('&amp;amp;');
});

test('markup built by html stays markup; arrays join; absent values vanish', () => {
  const items = ['<a>', 'b'].map((x) => html`<li>${x}</li>`);
  // Prettier re-indents html`` templates; the whitespace between tags is not what is under test.
  const list = html`<ul>
    ${items}
  </ul>`.text.replace(/\s+/g, '');
  expect(list).toBe('<ul><li>&lt;a&gt;</li><li>b</li></ul>');
  expect(html`[${undefined}${null}${false}${0}]`.text).toBe('[0]');
});

test('links keep their fixed path: a hostile id is one encoded segment, never a scheme or another origin', () => {
  expect(path('/dead-letters', 'javascript:alert(1)', '//evil.example/x')).toBe(
    '/dead-letters/javascript%3Aalert(1)/%2F%2Fevil.example%2Fx',
  );
  expect(query('/dead-letters', { destination: 'a&b', type: '', since: undefined, offset: 50 })).toBe(
    '/dead-letters?destination=a%26b&offset=50',
  );
});
