// Fake of cairn:plugin/log: lines are kept in host.log.
import { host } from './host.js';

export const log = (level, message, fields) => host.log.push({ level, message, fields });
