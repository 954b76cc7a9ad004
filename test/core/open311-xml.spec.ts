import { expect } from 'chai';
import { XMLParser } from 'fast-xml-parser';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Open311 GeoReport v2 in both formats over HTTP: every endpoint answers XML
 * (the spec's default) beside JSON, errors included, with the same access
 * rules (an intake client sees only its own requests).
 */

const ALPHA = 'alpha-key-1111111111';
const BETA = 'beta-key-2222222222';
const OPS = 'ops-key-3333333333';
const UNKNOWN = '19990101-000001';

// Everything as text, lists always arrays: what a strict GeoReport client would read.
const parser = new XMLParser({ parseTagValue: false, trimValues: false, isArray: (name) => ['service', 'request', 'error', 'endpoint', 'format'].includes(name) });
type Row = Record<string, string>;

describe('Open311 GeoReport v2: XML beside JSON (over HTTP)', function () {
  this.timeout(60_000);
  let tg: TestGateway;
  const url = (path: string) => `${tg.baseUrl}/open311/v2${path}`;
  const get = async (path: string) => {
    const r = await fetch(url(path));
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
  };
  const create = async (fmt: 'json' | 'xml', key: string | null, fields: Record<string, string>) => {
    const r = await fetch(url(`/requests.${fmt}`), { method: 'POST', body: new URLSearchParams({ ...(key ? { api_key: key } : {}), ...fields }) });
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
  };
  const xmlRequests = (text: string): Row[] => (parser.parse(text).service_requests?.request ?? []) as Row[];
  const xmlErrors = (text: string): Row[] => parser.parse(text).errors.error as Row[];
  const place = { lat: '36.66', long: '117.02' };

  let alphaXml: string;
  let alphaJson: string;
  let betaNumber: string;

  before(async () => {
    tg = await startTestGateway({ APP_API_KEYS: `alpha:${ALPHA},beta:${BETA}`, DOWNSTREAM_API_KEYS: `ops:${OPS}` });
  });
  after(async () => {
    await tg?.stop();
  });

  it('services.xml: <services><service> with the same services as services.json', async () => {
    const x = await get('/services.xml');
    expect(x.status).to.equal(200);
    expect(x.type).to.match(/^text\/xml; charset=utf-8/);
    expect(x.text.startsWith('<?xml version="1.0" encoding="utf-8"?>\n<services><service><service_code>')).to.equal(true);
    const services = parser.parse(x.text).services.service as Row[];
    const json = JSON.parse((await get('/services.json')).text) as Record<string, unknown>[];
    expect(services.map((s) => s.service_code)).to.deep.equal(json.map((s) => s.service_code));
    expect(services[0]).to.deep.equal(Object.fromEntries(Object.entries(json[0]!).map(([k, v]) => [k, String(v)])));
  });

  it('discovery.xml names both formats', async () => {
    const x = await get('/discovery.xml');
    expect(x.status).to.equal(200);
    const d = parser.parse(x.text).discovery;
    expect(d.endpoints.endpoint[0].formats.format).to.deep.equal(['text/xml', 'application/json']);
    expect(JSON.parse((await get('/discovery.json')).text).endpoints[0].formats).to.deep.equal(['text/xml', 'application/json']);
  });

  it('POST requests.xml → 201 <service_requests><request>; POST requests.json → 201 [..]', async () => {
    const x = await create('xml', ALPHA, { service_code: 'help', ...place, description: '井盖<缺失> & "危险"' });
    expect(x.status, x.text).to.equal(201);
    expect(x.type).to.match(/^text\/xml/);
    const [req] = xmlRequests(x.text);
    expect(req!.service_request_id).to.match(/^\d{8}-\d{6}$/);
    expect(req!.service_notice).to.contain(req!.service_request_id);
    expect(req!.account_id).to.equal('');
    alphaXml = req!.service_request_id!;
    const [m] = await tg.created.waitFor((c) => c.body.number === alphaXml);
    expect(m!.body.content).to.equal('井盖<缺失> & "危险"');

    const j = await create('json', ALPHA, { service_code: 'complaint', ...place, description: '夜间施工噪音' });
    expect(j.status).to.equal(201);
    alphaJson = (JSON.parse(j.text) as Row[])[0]!.service_request_id!;
    const b = await create('json', BETA, { service_code: 'report', ...place, description: '占道经营' });
    betaNumber = (JSON.parse(b.text) as Row[])[0]!.service_request_id!;
  });

  it('GET requests.xml lists only the caller\'s own requests, escaped text intact; a downstream key sees all', async () => {
    const ids = [alphaXml, alphaJson, betaNumber, UNKNOWN].join(',');
    const x = await get(`/requests.xml?api_key=${ALPHA}&service_request_id=${ids}`);
    expect(x.status).to.equal(200);
    expect(x.text).to.contain('井盖&lt;缺失&gt; &amp; &quot;危险&quot;');
    const rows = xmlRequests(x.text);
    expect(rows.map((r) => r.service_request_id)).to.deep.equal([alphaXml, alphaJson]);
    expect(rows[0]).to.include({ status: 'open', service_code: 'help', description: '井盖<缺失> & "危险"', lat: '36.66', long: '117.02', status_notes: '' });
    const json = JSON.parse((await get(`/requests.json?api_key=${ALPHA}&service_request_id=${ids}`)).text) as Row[];
    expect(json.map((r) => r.service_request_id)).to.deep.equal([alphaXml, alphaJson]);
    expect(xmlRequests((await get(`/requests.xml?api_key=${OPS}&service_request_id=${ids}`)).text).map((r) => r.service_request_id)).to.deep.equal([alphaXml, alphaJson, betaNumber]);
    // Nothing visible is an empty list, not an error.
    const none = await get(`/requests.xml?api_key=${BETA}&service_request_id=${alphaXml}`);
    expect(none.status).to.equal(200);
    expect(none.text).to.equal('<?xml version="1.0" encoding="utf-8"?>\n<service_requests></service_requests>');
  });

  it('GET requests/:id.xml: own → one request; another client\'s → the same 404 as an unknown one', async () => {
    for (const fmt of ['xml', 'json'] as const) {
      const own = await get(`/requests/${alphaJson}.${fmt}?api_key=${ALPHA}`);
      expect(own.status).to.equal(200);
      const row = fmt === 'xml' ? xmlRequests(own.text)[0]! : (JSON.parse(own.text) as Row[])[0]!;
      expect(row.service_request_id).to.equal(alphaJson);
      expect(row.service_code).to.equal('complaint');
      const other = await get(`/requests/${betaNumber}.${fmt}?api_key=${ALPHA}`);
      const unknown = await get(`/requests/${UNKNOWN}.${fmt}?api_key=${ALPHA}`);
      expect(other.status).to.equal(404);
      expect(other.text).to.equal(unknown.text);
      expect(other.type).to.equal(unknown.type);
    }
    expect(xmlErrors((await get(`/requests/${UNKNOWN}.xml?api_key=${ALPHA}`)).text)).to.deep.equal([{ code: '404', description: 'service_request_id not found' }]);
    expect((await get(`/requests/${betaNumber}.xml?api_key=${OPS}`)).status).to.equal(200);
  });

  it('errors as <errors><error><code/><description/></error></errors> with the HTTP status', async () => {
    const noKey = await create('xml', null, { service_code: 'help', ...place, description: 'x' });
    expect(noKey.status).to.equal(403);
    expect(noKey.type).to.match(/^text\/xml/);
    expect(xmlErrors(noKey.text)[0]).to.include({ code: '403' });
    expect(noKey.text).to.match(/^<\?xml version="1.0" encoding="utf-8"\?>\n<errors><error><code>403<\/code><description>Invalid api_key/);

    const noPlace = await create('xml', ALPHA, { service_code: 'help', description: 'x' });
    expect(noPlace.status).to.equal(400);
    expect(xmlErrors(noPlace.text)[0]!.description).to.contain('location');

    const badService = await create('xml', ALPHA, { service_code: 'parking', ...place, description: 'x' });
    expect(badService.status).to.equal(404);
    expect(xmlErrors(badService.text)[0]!.code).to.equal('404');

    const downstream = await create('xml', OPS, { service_code: 'help', ...place, description: 'x' });
    expect(downstream.status).to.equal(403);

    const wrongType = await fetch(url('/requests.xml'), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: `api_key=${ALPHA}` });
    expect(wrongType.status).to.equal(415);
    expect(xmlErrors(await wrongType.text())[0]!.code).to.equal('415');

    const noIds = await get(`/requests.xml?api_key=${ALPHA}`);
    expect(noIds.status).to.equal(400);
    expect(xmlErrors(noIds.text)[0]!.code).to.equal('400');

    const badKey = await get(`/requests/${alphaJson}.xml?api_key=nope`);
    expect(badKey.status).to.equal(403);
    // JSON keeps its own shape.
    const jsonErr = await get(`/requests/${alphaJson}.json?api_key=nope`);
    expect(JSON.parse(jsonErr.text)).to.deep.equal([{ code: 403, description: "Invalid api_key received -- can't proceed with get_service_request." }]);
  });
});
