/** The app API request body the benchmarks send: a Chinese report of about 450 bytes, 5,000 distinct citizens. */
export function ticketBody(i: number, prefix: string): string {
  return JSON.stringify({
    clientMessageId: `${prefix}-${i}`,
    citizen: { id: `citizen-${i % 5000}`, phone: `138${String(i % 100_000_000).padStart(8, '0')}` },
    content: `暴雨后小区门口积水严重，车辆无法通行，请尽快处理。编号${i}。`.padEnd(300, '。'),
    location: { lat: 36.65, lon: 117.12, address: '历下区经十路' },
  });
}
